"""Cancelling a request's task right after its write, as the end of the process does to a
request still running (see `app.complete_despite_cancellation`), and sending such a request."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable

import aiohttp


def cancel_this_request() -> None:
    """Cancel the task running the caller: delivered at its next suspension."""
    task = asyncio.current_task()
    assert task is not None
    task.cancel()


async def send_cancelled(sending: Awaitable[aiohttp.ClientResponse]) -> None:
    """Send a request that the server cancels: its connection goes with it, and an answer means
    the cancellation never happened."""
    with contextlib.suppress(aiohttp.ClientError):
        resp = await sending
        msg = f"answered {resp.status}: the request was not cancelled"
        raise AssertionError(msg)
