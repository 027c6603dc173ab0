"""The `sessions` and `end-session` steps: a user lists their sessions and ends one.

A session is a refresh-token family (one login, renewed by each refresh). Ending one revokes
the family in the token store, which every instance reads (and mirrors, told by Redis when it
changes), so its refresh token and every access token naming it are 401 at once everywhere.
Only the caller's own sessions can be seen or ended; another user's id is a 404, as an
unknown one is.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final, final

import attrs
from aiohttp import web

from app import (
    Actor,
    BuildContext,
    CheckContext,
    Handler,
    NotFound,
    OperationDoc,
    actor_key,
    json_response,
    model_ref,
)
from plugins.auth.config import EndSessionConfig, SessionsConfig
from plugins.auth.services import AuthServices, services_key, store_errors
from plugins.auth.sessions import SessionTimes
from plugins.auth.step import session_key, unauthorized

_SESSION_ID: Final = re.compile(r"[0-9a-f]{32}")


def _rfc3339(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _caller(request: web.Request) -> int:
    actor: Actor | None = request.get(actor_key)
    if actor is None:  # the pipeline lacks an `auth` step that admits only callers
        msg = "A bearer token is required."
        raise unauthorized(msg, error=None)
    return actor.user_id


async def live_sessions(services: AuthServices, user_id: int) -> dict[str, SessionTimes]:
    """The user's sessions whose tokens still work; the index forgets the others.

    A session ends on its own (logout, a replayed refresh token, `end-session`: the token
    store forgets its family) or with all the user's sessions at once (a password change or
    reset, a disabled user: the revocation cut-off). A session last refreshed at or before the
    cut-off holds only tokens issued before it, which are refused (`check_not_revoked`).
    """
    with store_errors():
        indexed = await services.sessions.of(user_id)
        cutoff = await services.revocations.cutoff(user_id) if indexed else None
        live = {
            family: times for family, times in indexed.items()
            if (cutoff is None or times.last_used_at > cutoff) and await services.store.family_alive(family)
        }
        await services.sessions.forget(user_id, *(family for family in indexed if family not in live))
    return live


@final
@attrs.frozen
class SessionsStep:
    config: SessionsConfig
    services: AuthServices

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        live = await live_sessions(self.services, _caller(request))
        current = request.get(session_key)
        items: list[dict[str, Any]] = [
            {"id": family, "created_at": _rfc3339(times.created_at), "last_used_at": _rfc3339(times.last_used_at),
             "current": family == current}
            for family, times in sorted(live.items(), key=lambda item: item[1].last_used_at, reverse=True)
        ]
        return json_response({"items": items})


@final
@attrs.frozen
class EndSessionStep:
    config: EndSessionConfig
    services: AuthServices

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        user_id = _caller(request)
        family = request.match_info[self.config.session_param]
        if not _SESSION_ID.fullmatch(family) or family not in await live_sessions(self.services, user_id):
            msg = "You have no live session with this id."
            raise NotFound(msg)
        with store_errors():
            await self.services.store.revoke_family(family)
            await self.services.sessions.forget(user_id, family)
        return web.Response(status=204)


def check_end_session(config: EndSessionConfig, ctx: CheckContext) -> list[str]:
    if config.session_param not in ctx.route_params:
        return [f"the route has no {{{config.session_param}}} parameter (set session_param)"]
    return []


def build_sessions(config: SessionsConfig, ctx: BuildContext) -> SessionsStep:
    return SessionsStep(config, ctx.app[services_key])


def build_end_session(config: EndSessionConfig, ctx: BuildContext) -> EndSessionStep:
    return EndSessionStep(config, ctx.app[services_key])


_RETRY: Final = {"Retry-After": "Seconds to wait."}


def document_sessions(config: SessionsConfig, doc: OperationDoc) -> None:
    doc.respond(200, "The caller's live sessions", schema=model_ref("SessionList"))
    doc.problem(503, "Token state is unavailable", headers=_RETRY)


def document_end_session(config: EndSessionConfig, doc: OperationDoc) -> None:
    doc.respond(204, "Ended: the session's access and refresh tokens are refused from now on")
    doc.problem(404, "The caller has no live session with this id")
    doc.problem(503, "Token state is unavailable", headers=_RETRY)
