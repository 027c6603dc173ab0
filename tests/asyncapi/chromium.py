"""Load a page in headless Chromium: the DOM once its scripts ran, and what the page requested.

`--dump-dom` after a `--virtual-time-budget` gives the DOM the page's scripts built. Chromium's
NetLog records every request; those the page made are the ones in its own network partition
(the top frame's site), which tells them from the browser's own background calls (update
checks and the like). A host resolver rule fails every name but the loopback address, so the
page is loaded as if offline: what renders needs nothing from another host.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
