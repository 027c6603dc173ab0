"""`acme-audit`: a JSON line per request, appended to a file opened at start-up, closed at shutdown."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from typing import TextIO

import attrs
from aiohttp import web

from acme_plugin.settings import AcmeSettings
from app import Handler, ProblemError, Resources, StepType, hookimpl, plugin_settings, request_id_key


@attrs.define
class AuditLog:
    """Where audit lines go: the ACME_AUDIT_LOG file while the service runs, else stderr."""

    file: TextIO = attrs.field(factory=lambda: sys.stderr)

    def write(self, request: web.Request, status: int) -> None:
        line = {"method": request.method, "path": request.path, "status": status, "id": request.get(request_id_key)}
        print(json.dumps(line), file=self.file, flush=True)


audit_key = web.AppKey("acme_audit", AuditLog)


@hookimpl
def setup_app(app: web.Application, resources: Resources) -> None:
    audit = resources.provide(audit_key, AuditLog())
    if (path := plugin_settings(app, AcmeSettings).audit_log) is not None:  # opened at start-up, closed at shutdown

        async def open_file(app: web.Application) -> AsyncIterator[None]:
            with path.open("a", encoding="utf-8") as audit.file:
                yield

        resources.add("acme-audit-log", open_file, description="the ACME_AUDIT_LOG file")


@attrs.frozen
class AuditConfig:
    """`{ use = "acme-audit" }`: method, path, status and request id of every request."""


@attrs.frozen
class AuditStep:
    audit: AuditLog

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except ProblemError as exc:
            self.audit.write(request, exc.status)
            raise
        self.audit.write(request, response.status)
        return response


# observes_only: it answers nothing itself, so it may stand before the guards and see every request.
AUDIT = StepType(name="acme-audit", config_cls=AuditConfig, build=lambda config, ctx: AuditStep(ctx.app[audit_key]),
                 observes_only=True)
