"""Durable outboxes: where events wait while the broker cannot take them (contract §9).

An entry leaves an outbox only after the broker confirmed it (`remove` is called with the ids
the publisher saw confirmed), so a crash at any point repeats an event rather than losing it.
Order is FIFO: `peek` returns the oldest entries first. An entry is the event's body with
the headers it is to be sent with (`Event.to_outbox_json`), so an event sent late still carries
the trace context of the request that made it (contract §15).

`FileOutbox` removes by rewriting the file to a temp file and renaming it over the original,
rather than keeping a separate committed-offset file. The outbox only fills while the broker
is away and is drained in batches as soon as it returns, so it is short, and the rewrite cost
does not matter; in exchange there is exactly one file whose content *is* the truth, with no
second piece of state (an offset) that a crash could leave disagreeing with it, no compaction
step, and nothing to repair by hand. It is safe for the tasks of one process; two processes
must not share a file (several workers share a `RedisOutbox` instead, as contract §3 requires
REDIS_URL for `--workers N` anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Collection
from pathlib import Path
from typing import Final, Protocol, final

from app.clients.outbox_journal import OutboxJournal, RedisClientSource
from app.clients.redis import redis_errors
from app.models.events import Event, EventDecodeError
from app.private_files import open_private

log = logging.getLogger("turnstile.outbox")

DEFAULT_FILE_NAME = "outbox.jsonl"
DEFAULT_REDIS_KEY = "turnstile:outbox"


class Outbox(Protocol):
    """A durable FIFO of events that the broker has not confirmed yet."""

    async def append(self, event: Event) -> None:
        """Store `event` durably behind everything already held; return only once it is stored."""

    async def peek(self, n: int) -> list[Event]:
        """The `n` oldest events, oldest first, without removing them."""

    async def remove(self, event_ids: Collection[str]) -> None:
        """Drop the entries with these ids (called only after the broker confirmed them)."""

    async def depth(self) -> int:
        """How many events are waiting."""


@final
class FileOutbox:
    """An append-only JSON-lines file, fsynced on append and rewritten atomically on removal.

    Args:
        directory: where `outbox.jsonl` lives; created on first use.
        file_name: the file's name inside `directory`.
    """

    def __init__(self, directory: str | os.PathLike[str], file_name: str = DEFAULT_FILE_NAME) -> None:
        self.path = Path(directory) / file_name
        self._lock = asyncio.Lock()
        self._entries: list[tuple[str, bytes]] | None = None  # (event id, JSON line), oldest first

    async def append(self, event: Event) -> None:
        line = event.to_outbox_json() + b"\n"
        async with self._lock:
            entries = await self._loaded()
            await asyncio.to_thread(self._append_line, line)
            entries.append((event.id, line))

    async def peek(self, n: int) -> list[Event]:
        async with self._lock:
            entries = await self._loaded()
            return [Event.from_outbox_json(line) for _, line in entries[: max(n, 0)]]

    async def remove(self, event_ids: Collection[str]) -> None:
        gone = set(event_ids)
        async with self._lock:
            entries = await self._loaded()
            kept = [entry for entry in entries if entry[0] not in gone]
            if len(kept) == len(entries):
                return
            await asyncio.to_thread(self._rewrite, [line for _, line in kept])
            self._entries = kept

    async def depth(self) -> int:
        async with self._lock:
            return len(await self._loaded())

    async def _loaded(self) -> list[tuple[str, bytes]]:
        if self._entries is None:
            self._entries = await asyncio.to_thread(self._load)
        return self._entries

    def _load(self) -> list[tuple[str, bytes]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        entries: list[tuple[str, bytes]] = []
        for line in raw.splitlines():
            if not line.strip():
                continue
            try:
                entries.append((Event.from_outbox_json(line).id, line + b"\n"))
            except EventDecodeError:
                # A torn last write (the process died mid-append, before the caller heard
                # "outboxed") or a hand edit. It cannot be published; say so loudly.
                log.error("outbox %s: dropping an unreadable line: %r", self.path, line[:500])
        if raw and (not raw.endswith(b"\n") or len(entries) != raw.count(b"\n")):
            self._rewrite([line for _, line in entries])  # so the next append starts on a clean line
        return entries

    def _append_line(self, line: bytes) -> None:
        with open_private(self.path, append=True) as file:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())

    def _rewrite(self, lines: list[bytes]) -> None:
        temp = self.path.with_name(self.path.name + ".tmp")
        with open_private(temp, append=False) as file:
            file.writelines(lines)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, self.path)
        _fsync_dir(self.path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable: the directory entry itself must reach the disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@final
class RedisOutbox:
    """A Redis list: RPUSH to append, LRANGE to peek, LREM of the exact stored value to remove.

    Removing by value (not LTRIM by position) stays correct when several processes share the
    key: another worker's appends at the tail or removals of its own entries never shift
    what this one removes. Durability is Redis's (run it with AOF, `appendfsync everysec` or
    `always`), backed by each process's memory of what it appended (`OutboxJournal`: a Redis
    back empty or older gets it again). Failures to reach Redis raise
    `app.clients.redis.RedisUnavailable`.

    Args:
        connection: anything with a `.client` (a `coredis.Redis` with decode_responses=True).
        key: the list's key.
    """

    def __init__(self, connection: RedisClientSource, key: str = DEFAULT_REDIS_KEY) -> None:
        self._connection = connection
        self.key = key
        self._stored: dict[str, str] = {}  # event id -> the exact JSON text in the list
        # What this process appended, put back if Redis comes back without it.
        self._journal = OutboxJournal(connection, key)

    async def append(self, event: Event) -> None:
        text = event.to_outbox_json().decode()
        await self._journal.append([(event.id, text)])
        self._stored[event.id] = text

    async def peek(self, n: int) -> list[Event]:
        if n <= 0:
            return []
        with redis_errors():
            texts = await self._connection.client.lrange(self.key, 0, n - 1)
        events: list[Event] = []
        for text in texts:
            try:
                event = Event.from_outbox_json(text)
            except EventDecodeError:
                await self._quarantine(text)
                continue
            self._stored[event.id] = text
            events.append(event)
        return events

    async def remove(self, event_ids: Collection[str]) -> None:
        client = self._connection.client
        missing = [event_id for event_id in event_ids if event_id not in self._stored]
        if missing:
            await self._find(set(missing))
        for event_id in event_ids:
            text = self._stored.get(event_id)
            if text is not None:
                with redis_errors():
                    await client.lrem(self.key, 1, text)
                self._stored.pop(event_id, None)
                self._journal.forget([event_id])

    async def depth(self) -> int:
        depth = await self._journal.depth()
        if depth == 0:  # what was peeked is gone (another process may have removed it): texts kept for nothing
            self._stored.clear()
        return depth

    async def _find(self, wanted: set[str]) -> None:
        with redis_errors():
            texts = await self._connection.client.lrange(self.key, 0, -1)
        for text in texts:
            try:
                event = Event.from_outbox_json(text)
            except EventDecodeError:
                continue
            if event.id in wanted:
                self._stored[event.id] = text

    async def _quarantine(self, text: str) -> None:
        """Move an unreadable entry aside so it cannot block the head of the list forever."""
        log.error("outbox %s: moving an unreadable entry to %s:corrupt: %r", self.key, self.key, text[:500])
        client = self._connection.client
        with redis_errors():
            await client.rpush(f"{self.key}:corrupt", [text])
            await client.lrem(self.key, 1, text)


# How many local spill files one var directory offers: one per process of a `--workers N`.
MAX_SPILL_FILES: Final = 64
# Spilled events moved to the shared store per rewrite of the spill file.
MOVE_BATCH: Final = 100


@final
class SpilloverOutbox:
    """The shared outbox (Redis), with a local file for the events it cannot take.

    Redis and RabbitMQ down at once (one network fault, one node) left an event nowhere but an
    error log line. Here an append the shared outbox refuses goes to a file of this process,
    fsynced, and is delivered like any other once the broker is back; the drain reads both,
    oldest first by `occurred_at` (events of one change keep their order; across the two
    stores the order is as good as the clocks of the instances). Once the shared outbox answers
    again, the file's events move there, ahead of any new event (`_move_spilled`): another
    process may be the one that drains it. The file lives in the var
    directory: it outlives a restart of the process (Kubernetes' emptyDir outlives a container
    restart, not the pod), and the next process to claim it delivers what it holds.

    A file is claimed with an exclusive `flock` on its `.lock` companion, held for the life of
    the process, so the processes of `--workers N` never share one and a dead process's file is
    taken over by the next that starts. The claim is made on first use (the publisher reads its
    outbox as it starts), not when the app is built.
    """

    def __init__(self, shared: Outbox, directory: str | os.PathLike[str]) -> None:
        self.shared = shared
        self.directory = Path(directory)
        self._local: FileOutbox | None = None
        self._lock_fd: int | None = None
        self._spilled: set[str] = set()  # ids peeked from the local file
        self._spilling = False

    async def append(self, event: Event) -> None:
        try:
            await self._move_spilled()
            await self.shared.append(event)
        except Exception as exc:  # any backend's failure: the local file is the next place
            local = await self._file()
            await local.append(event)  # raises when it fails too: the publisher logs the event
            if not self._spilling:
                self._spilling = True
                log.warning("event outbox %r failed (%r): events wait in %s until it answers",
                            type(self.shared).__name__, exc, local.path)
            return
        if self._spilling:
            self._spilling = False
            log.info("event outbox %s answers again: new events wait there", type(self.shared).__name__)

    async def peek(self, n: int) -> list[Event]:
        local = await (await self._file()).peek(n)
        self._spilled = {event.id for event in local}
        try:
            shared = await self.shared.peek(n)
        except Exception:
            if local:
                return local  # deliver what this process holds while the shared store is away
            raise
        return sorted([*local, *shared], key=lambda event: event.occurred_at)[: max(n, 0)]

    async def remove(self, event_ids: Collection[str]) -> None:
        local = [event_id for event_id in event_ids if event_id in self._spilled]
        shared = [event_id for event_id in event_ids if event_id not in self._spilled]
        if local:
            await (await self._file()).remove(local)
        if shared:
            await self.shared.remove(shared)

    async def depth(self) -> int:
        with contextlib.suppress(Exception):  # the shared store still away: they wait here
            await self._move_spilled()
        local = await (await self._file()).depth()
        try:
            return local + await self.shared.depth()
        except Exception:
            if local:
                return local
            raise

    async def _move_spilled(self) -> None:
        """What this process spilled goes to the shared store, oldest first, before anything new.

        Another process may be the one that drains the shared store (this one has lost its broker
        link): an event left in this file would reach consumers after the later events of the
        same user that went to the shared store. Raises the shared store's failure; what was not
        moved stays (what was moved but not yet dropped from the file is sent twice: at-least-once).
        """
        local = await self._file()
        if not await local.depth():
            return
        while waiting := await local.peek(MOVE_BATCH):
            for event in waiting:
                await self.shared.append(event)
            await local.remove([event.id for event in waiting])
        log.info("events spilled to %s while %s was away are in it now", local.path, type(self.shared).__name__)

    def close(self) -> None:
        """Give up the claim on the spill file (what it holds stays for the next process)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases its flock
            self._lock_fd = None
            self._local = None

    async def _file(self) -> FileOutbox:
        if self._local is None:
            file_name, self._lock_fd = await asyncio.to_thread(_claim_spill_file, self.directory)
            self._local = FileOutbox(self.directory, file_name)
        return self._local


def _claim_spill_file(directory: Path) -> tuple[str, int]:
    """The name of a spill file no live process holds, and the descriptor that holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(MAX_SPILL_FILES):
        fd = os.open(directory / f"outbox-spill-{index}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return f"outbox-spill-{index}.jsonl", fd
    msg = f"all {MAX_SPILL_FILES} event spill files in {directory} are held by live processes"
    raise OSError(msg)
