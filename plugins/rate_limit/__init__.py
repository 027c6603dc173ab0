"""The built-in `rate-limit` plugin: limits requests, or failed ones, per client, caller or body field."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app import OperationDoc, Resources, StepKind, StepType, hookimpl
from plugins.rate_limit.config import RateLimitConfig, kind_of
from plugins.rate_limit.step import build, counter_key, make_counter


def document(config: RateLimitConfig, doc: OperationDoc) -> None:
    words = {"client": "client address", "actor": "caller"}
    what = " and ".join(words.get(part, f"`{part.removeprefix('body.')}`") for part in config.parts)
    counted = "requests" if config.count == "requests" else "failed attempts"
    if config.when is not None:
        counted += f" that send `{config.when.removeprefix('body.')}`"
    doc.problem(
        429,
        f"Too many {counted}: more than {config.limit} per {config.window_s} s per {what}",
        headers={"Retry-After": "Seconds until the limit lets this caller through again"},
    )


@hookimpl
def register_steps() -> list[StepType[Any]]:
    return [
        StepType(name="rate-limit", config_cls=RateLimitConfig, build=build, kind=StepKind.GUARD, kind_of=kind_of,
                 document=document)
    ]


@hookimpl
def setup_app(app: web.Application, resources: Resources) -> None:
    resources.provide(
        counter_key, make_counter(app),
        description="window counters: in Redis under turnstile:rl: when REDIS_URL is set, else in memory",
    )
