"""The built-in `cache` plugin: the `cache` and `cache-invalidate` steps."""

from __future__ import annotations

from typing import Any

from app import StepKind, StepType, hookimpl
from plugins.cache import invalidate, step
from plugins.cache.config import CacheConfig, CacheInvalidateConfig


@hookimpl
def register_steps() -> list[StepType[Any]]:
    return [
        StepType(name="cache", config_cls=CacheConfig, build=step.build, kind=StepKind.WRAPPER, document=step.document),
        StepType(
            name="cache-invalidate",
            config_cls=CacheInvalidateConfig,
            build=invalidate.build,
            kind=StepKind.WRAPPER,
            build_for_message=invalidate.build_for_message,
        ),
    ]
