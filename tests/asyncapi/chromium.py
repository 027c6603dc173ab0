"""Load a page in headless Chromium: the DOM once its scripts ran, and what the page requested;
or open one and act in it (`open_page`: click, type, read, over the DevTools protocol).

`--dump-dom` after a `--virtual-time-budget` gives the DOM the page's scripts built. Chromium's
NetLog records every request; those the page made are the ones in its own network partition
(the top frame's site), which tells them from the browser's own background calls (update
checks and the like). A host resolver rule fails every name but the loopback address, so the
page is loaded as if offline: what renders needs nothing from another host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import attrs

from tests.asyncapi.conftest import missing

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)
VIRTUAL_TIME_BUDGET_MS = 15000
TIMEOUT_S = 120


@attrs.frozen
class PageLoad:
    dom: str
    requests: list[str]  # the URLs the page asked for, in order


async def load_page(url: str, workdir: Path) -> PageLoad:
    chromium = shutil.which("chromium")
    if chromium is None:
        missing("chromium is not installed")
    netlog = workdir / "netlog.json"
    process = await asyncio.create_subprocess_exec(
        str(chromium), *FLAGS, f"--user-data-dir={workdir / 'profile'}", f"--log-net-log={netlog}",
        f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}", "--dump-dom", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT_S)
    assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
    return PageLoad(stdout.decode(), page_requests(netlog, url))


def page_requests(netlog: Path, page_url: str) -> list[str]:
    """The URLs of the requests made in the page's network partition."""
    log = _read_netlog(netlog)
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    site = _site(page_url)
    urls = []
    for event in log["events"]:
        params = event.get("params", {})
        if event["type"] != start_job or "url" not in params:
            continue
        top_frame_site = params.get("network_isolation_key", "").split(" ")[0]
        if top_frame_site == site:
            urls.append(params["url"])
    return urls


def _read_netlog(path: Path) -> dict[str, Any]:
    text = path.read_text()
    try:
        log: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError:
        # A log whose writer was cut short lacks its closing brackets.
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    return log


def _site(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}"


class Page:
    """A page open in headless Chromium, driven over the DevTools protocol (as a person would:
    clicks and typing happen in the page, its own scripts react)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._next_id = 0

    async def evaluate(self, expression: str) -> Any:
        """The value of `expression` in the page (awaited when it is a promise)."""
        self._next_id += 1
        call_id = self._next_id
        await self._ws.send_json({"id": call_id, "method": "Runtime.evaluate", "params": {
            "expression": expression, "awaitPromise": True, "returnByValue": True}})
        async for message in self._ws:
            answer = json.loads(message.data)
            if answer.get("id") == call_id:
                result = answer["result"]
                assert "exceptionDetails" not in result, result
                return result["result"].get("value")
        msg = "the page closed"
        raise AssertionError(msg)

    async def wait_for(self, expression: str, timeout_s: float = 15) -> Any:
        """The first truthy value of `expression`, polled."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not (value := await self.evaluate(expression)):
            assert asyncio.get_running_loop().time() < deadline, f"never true: {expression}"
            await asyncio.sleep(0.1)
        return value


@contextlib.asynccontextmanager
async def open_page(url: str, workdir: Path) -> AsyncIterator[Page]:
    chromium = shutil.which("chromium")
    if chromium is None:
        missing("chromium is not installed")
    process = await asyncio.create_subprocess_exec(
        str(chromium), *FLAGS, f"--user-data-dir={workdir / 'profile'}", "--remote-debugging-port=0", url,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        port = None
        while port is None:
            line = (await asyncio.wait_for(process.stderr.readline(), TIMEOUT_S)).decode()
            assert line, "chromium ended before it listened"
            if line.startswith("DevTools listening on ws://"):
                port = int(urlsplit(line.split()[-1]).port or 0)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            (target,) = [t for t in targets if t["type"] == "page"]
            async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = Page(ws)
                # The tab opens blank, then loads `url` (its fragment may be gone by then: taken)
                base = json.dumps(url.split("#", 1)[0])
                await page.wait_for(f"location.href.startsWith({base}) && document.readyState === 'complete'")
                yield page
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
