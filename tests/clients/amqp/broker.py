"""A TCP stand-in for the broker, for the AMQP client tests: it forwards, freezes (a broker
that stops answering) or goes down (connection refused) and comes back on the same port."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit


class FreezableProxy:
    """A TCP proxy to the broker that can hold every byte (a broker that stops answering)."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5672)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.url = ""

    async def __aenter__(self) -> FreezableProxy:
        self._server: asyncio.Server | None = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self._port = self._server.sockets[0].getsockname()[1]
        self.url = f"amqp://guest:guest@127.0.0.1:{self._port}/"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._flowing.set()
        await self.go_down()

    async def go_down(self) -> None:
        """Refuse new connections and cut every open one."""
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def come_back(self) -> None:
        """Listen again on the same port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self._port, reuse_address=True)

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        sink.close()


