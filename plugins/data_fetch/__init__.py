"""The built-in `data-fetch` plugin: the terminal step that calls the data service."""

from __future__ import annotations

from typing import Any

from app import StepKind, StepType, hookimpl
from plugins.data_fetch.config import DataFetchConfig
from plugins.data_fetch.step import build, check, document


@hookimpl
def register_steps() -> list[StepType[Any]]:
    return [
        StepType(name="data-fetch", config_cls=DataFetchConfig, build=build, kind=StepKind.TERMINAL,
                 document=document, check=check)
    ]
