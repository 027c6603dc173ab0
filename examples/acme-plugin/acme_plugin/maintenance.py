"""`acme-maintenance`: while ACME_MAINTENANCE is on, the route answers 503 with Retry-After."""

from __future__ import annotations

import attrs
from aiohttp import web

from acme_plugin.settings import AcmeSettings
from app import Handler, OperationDoc, ServiceUnavailable, StepKind, StepType, plugin_settings


@attrs.frozen(kw_only=True)
class MaintenanceConfig:
    """`{ use = "acme-maintenance", retry_after_s = 300 }`: Retry-After while on, 1 s to a day."""

    retry_after_s: int = attrs.field(default=300, validator=[attrs.validators.ge(1), attrs.validators.le(86400)])


@attrs.frozen
class MaintenanceStep:
    config: MaintenanceConfig
    on: bool

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.on:
            msg = "ACME is down for maintenance; try again later."
            raise ServiceUnavailable(msg, retry_after_s=self.config.retry_after_s)
        return await handler(request)


def document(config: MaintenanceConfig, doc: OperationDoc) -> None:
    doc.problem(503, "Down for maintenance (ACME_MAINTENANCE)", headers={"Retry-After": "Seconds to wait."})


MAINTENANCE = StepType(
    name="acme-maintenance", config_cls=MaintenanceConfig, kind=StepKind.GUARD, document=document,
    build=lambda config, ctx: MaintenanceStep(config, plugin_settings(ctx.app, AcmeSettings).maintenance),
)
