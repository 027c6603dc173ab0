"""The built-in `rate-limit` plugin: a GUARD step limiting requests per client or per body field."""

from __future__ import annotations

from typing import Any

from app.hookspecs import hookimpl
from app.pipeline.docs import OperationDoc
from app.pipeline.types import StepKind, StepType
from plugins.rate_limit.config import RateLimitConfig
from plugins.rate_limit.step import build


def document(config: RateLimitConfig, doc: OperationDoc) -> None:
    what = "client address" if config.body_field is None else f"`{config.body_field}`"
    doc.problem(
        429,
        f"Too many requests: more than {config.limit} per {config.window_s} s per {what}",
        headers={"Retry-After": "Seconds until the limit lets this caller through again"},
    )


@hookimpl
def register_steps() -> list[StepType[Any]]:
    return [
        StepType(name="rate-limit", config_cls=RateLimitConfig, build=build, kind=StepKind.GUARD, document=document)
    ]
