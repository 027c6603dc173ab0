"""The start-up admin (TURNSTILE_ADMIN_EMAIL/PASSWORD) while the data service cannot answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final, Literal, final

from aiohttp import web

from app import Backoff, ProblemError

log = logging.getLogger("turnstile.admin")

StartupOutcome = Literal["created", "exists"]

# While the data service cannot answer at start-up: the waits between tries (jittered, doubling to the cap).
RETRY_FIRST_S: Final = 1.0
RETRY_MAX_S: Final = 30.0


@final
class StartUpAdmin:
    """Creates the start-up admin, and keeps trying in the background while the data service
    is down or slow, instead of failing the start-up: a pod that cannot start during a
    data-service outage would crash-loop, though every route it serves would answer (with a
    503 where the data service is needed) and come back on its own with the data service."""

    def __init__(self) -> None:
        self._retrying: asyncio.Task[None] | None = None

    async def ensure(self, create: Callable[[], Awaitable[StartupOutcome]]) -> None:
        try:
            await create()
        except ProblemError as exc:
            if exc.status < 502:  # an answer about the admin itself, not the data service down: stop
                raise
            log.warning("admin from TURNSTILE_ADMIN_EMAIL not created yet: the data service failed (%s); "
                        "trying again in the background", exc.detail)
            self._retrying = asyncio.create_task(self._until_created(create), name="start-up admin")

    async def stop(self) -> None:
        if self._retrying is not None:
            self._retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrying

    @staticmethod
    async def _until_created(create: Callable[[], Awaitable[StartupOutcome]]) -> None:
        backoff = Backoff(base_s=RETRY_FIRST_S, max_s=RETRY_MAX_S)
        while True:
            await asyncio.sleep(backoff.next_s())
            try:
                await create()  # logs its outcome
                return
            except ProblemError as exc:
                if exc.status < 502:
                    log.error("admin from TURNSTILE_ADMIN_EMAIL not created: %s", exc.detail)
                    return
            except Exception:
                log.exception("admin from TURNSTILE_ADMIN_EMAIL not created")
                return


start_up_admin_key: Final = web.AppKey("start_up_admin", StartUpAdmin)
