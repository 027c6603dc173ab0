"""A fault-injecting HTTP proxy to put between Turnstile and the reference data service.

`FaultProxy` forwards every request to the data service while its mode is ``pass``, and
otherwise misbehaves the way a real upstream does:

- ``slow``: holds the request longer than the client's total timeout, then forwards it;
- ``garbage``: answers 200 with a body that is not JSON;
- ``error500``: answers 500;
- ``hello-world``, ``json-list``: answers 200 with ``{"hello": "world"}`` or ``[1, 2, 3]``;
- ``missing-field``, ``wrong-type``, ``extra-fields``: forwards, then changes every user record
  in the answer (alone, or each of a page's items): without ``created_at``, with ``is_active``
  as the integer 1, or with fields the public User does not have (`EXTRA_FIELDS`);
- ``refuse-revocations``: forwards everything but a PATCH that records a revocation
  (``sessions_revoked_at``), which it answers 503, as a data service that failed just then;
- ``lose-write-answers``: forwards every request, but answers a user's PATCH or DELETE 500 once the
  data service has applied it (an answer lost after the commit); a revocation's PATCH passes;
- ``lose-write-answers-and-reads``: the same, and every GET is answered 503 (nothing can be read back);
- ``lose-write-answers-then-reads``: as ``lose-write-answers``, and once an answer was lost every
  GET is answered 503 too (the change cannot be read back);
- ``lose-create-answers``: forwards a create (``POST /api/v1/users/``), then answers 500 as if
  the answer were lost after the commit;
- ``empty-write-answers``: forwards every request, but answers a user's PATCH 200 with no body
  (a data service whose contract reading is "the change is made, nothing to say");
- ``other-record``: answers a GET of one user (``/api/v1/users/N``) with user 1's record, as a
  data service with a bug in its lookup would;
- ``loose-email``: answers a lookup by ``?email=`` with every user, as a data service whose
  filter is looser than an exact match (a "contains", or none) would;
- ``down``: `go_down()` closes the listener and every open connection (connection refused),
  `come_back()` listens again on the same port.

`calls` counts the requests that reached the proxy, so a test can tell a request the circuit
breaker refused (no call) from one that went out.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any, Final, Literal

import aiohttp
import orjson
from aiohttp import web

Mode = Literal[
    "pass", "slow", "garbage", "error500", "hello-world", "json-list", "missing-field", "wrong-type", "extra-fields",
    "refuse-revocations", "lose-write-answers", "lose-write-answers-and-reads", "other-record", "loose-email",
    "empty-write-answers", "lose-write-answers-then-reads", "lose-create-answers",
]
# What `extra-fields` adds to each record: fields a data service may well keep, and one it made up.
EXTRA_FIELDS: Final = {
    "sessions_revoked_at": "2026-11-30T12:00:00Z", "is_verified": True, "internal_note": "vip, do not email",
}

_RECORD_CHANGES: Final = frozenset({"missing-field", "wrong-type", "extra-fields"})
_ONE_USER: Final = re.compile(r"/api/v1/users/[0-9]+")
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade", "content-length", "content-encoding", "host",
})


class FaultProxy:
    """Forwards to `upstream` (a base URL) with a switchable fault; start it with `await start()`.

    Args:
        upstream: the data service's base URL, e.g. ``http://127.0.0.1:54321``.
        slow_s: how long ``slow`` holds a request; set it above the client's total timeout.
    """

    def __init__(self, upstream: str, *, slow_s: float = 2.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.slow_s = slow_s
        self.mode: Mode = "pass"
        self.calls = 0
        self.lost_one = False  # `lose-write-answers-then-reads`: an answer was lost
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._released = asyncio.Event()  # set on close, so held `slow` requests end at once

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        await self._listen()

    async def close(self) -> None:
        self._released.set()
        await self._stop_listening()
        if self._session is not None:
            await self._session.close()

    async def go_down(self) -> None:
        """Refuse connections: the listener and every kept-alive connection are closed."""
        await self._stop_listening()

    async def come_back(self) -> None:
        """Listen again on the same port."""
        await self._listen()

    async def _listen(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def _stop_listening(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:  # noqa: PLR0911  # one answer per mode
        self.calls += 1
        match self.mode:
            case "garbage":
                return web.Response(status=200, text="<html>upstream proxy error page</html>", content_type="text/html")
            case "error500":
                return web.json_response({"detail": "database is locked"}, status=500)
            case "hello-world":
                return web.json_response({"hello": "world"})
            case "json-list":
                return web.json_response([1, 2, 3])
            case "slow":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._released.wait(), self.slow_s)
            case "refuse-revocations" if request.method == "PATCH" and b"sessions_revoked_at" in await request.read():
                return web.json_response({"detail": "database is locked"}, status=503)
            case "lose-write-answers-and-reads" if request.method == "GET":
                return web.json_response({"detail": "database is locked"}, status=503)
            case "lose-write-answers-then-reads" if request.method == "GET" and self.lost_one:
                return web.json_response({"detail": "database is locked"}, status=503)
            case "lose-write-answers-then-reads" if await _loses_answer(request):
                await self._forward(request)
                self.lost_one = True
                return web.json_response({"detail": "connection to the database lost"}, status=500)
            case "lose-write-answers" | "lose-write-answers-and-reads" if await _loses_answer(request):
                await self._forward(request)
                return web.json_response({"detail": "connection to the database lost"}, status=500)
            case "lose-create-answers" if request.method == "POST" and request.path.rstrip("/") == "/api/v1/users":
                await self._forward(request)
                return web.json_response({"detail": "connection to the database lost"}, status=500)
            case "empty-write-answers" if request.method == "PATCH" and request.path.startswith("/api/v1/users/"):
                forwarded = await self._forward(request)
                return web.Response(status=forwarded.status) if forwarded.status == 200 else forwarded
        return await self._forward(request)

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None  # started
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        target = request.rel_url.path_qs
        if self.mode == "other-record" and request.method == "GET" and _ONE_USER.fullmatch(request.path):
            target = "/api/v1/users/1"
        if self.mode == "loose-email" and request.method == "GET" and "email" in request.query:
            target = request.rel_url.with_query({k: v for k, v in request.query.items() if k != "email"}).path_qs
        async with self._session.request(
            request.method,
            self.upstream + target,
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as upstream:
            body = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
            if self.mode in _RECORD_CHANGES and upstream.content_type == "application/json":
                body = orjson.dumps(_with_changed_records(orjson.loads(body), self.mode))
            return web.Response(status=upstream.status, body=body, headers=out)


async def _loses_answer(request: web.Request) -> bool:
    """A user's PATCH or DELETE, but not a revocation's PATCH (what the lost answer is about)."""
    return request.method in {"PATCH", "DELETE"} and request.path.startswith("/api/v1/users/") \
        and b"sessions_revoked_at" not in await request.read()


def _with_changed_records(answer: Any, mode: Mode) -> Any:
    """The answer with each user record in it changed as `mode` says."""
    if isinstance(answer, dict) and isinstance(answer.get("items"), list):
        return {**answer, "items": [_with_changed_records(item, mode) for item in answer["items"]]}
    if not isinstance(answer, dict) or "email" not in answer:
        return answer
    record = dict(answer)
    if mode == "missing-field":
        del record["created_at"]
    elif mode == "wrong-type":
        record["is_active"] = 1
    elif mode == "extra-fields":
        record.update(EXTRA_FIELDS)
    return record
