"""Turnstile's test kit for plugin authors: a pytest plugin (entry point ``pytest11``: ``turnstile``).

It defines fixtures and nothing else, so an installed Turnstile changes nothing in a test run
until a test asks for one. The ``turnstile`` fixture starts the whole service the way
``turnstile serve`` would, on its embedded defaults (the reference data service in-process on
SQLite, the memory cache and token store, events written to a file) in the test's temporary
directory, with the pipelines, plugins and environment the test gives, and hands back a
`Service`: an aiohttp test client, the events published and the mails sent::

    async def test_register(turnstile):
        service = await turnstile(PIPELINES, plugins=[my_plugin], env={"MY_SETTING": "on"})
        resp = await service.client.post("/api/v1/auth/register", json={...})
        assert [event["type"] for event in service.events()] == ["user.created"]

It needs pytest-aiohttp (``pip install turnstile[testing]``), whose ``aiohttp_client`` runs the
app and closes it after the test.
"""

from __future__ import annotations

import email
import email.policy
import importlib
import itertools
from collections.abc import Awaitable, Iterable, Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, final

import attrs
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from app.main import create_app
from app.pipeline.config import PipelineFileError
from app.plugins import make_plugin_manager
from app.settings import SettingsError, load_settings

if TYPE_CHECKING:
    from aiohttp.pytest_plugin import AiohttpClient

# What starting a service may raise, for tests that expect it.
__all__ = ["PipelineFileError", "Service", "SettingsError", "StartService", "turnstile"]


@final
@attrs.frozen
class Service:
    """A running Turnstile, as the ``turnstile`` fixture started it.

    client: an aiohttp test client on the service (``await service.client.get("/healthz")``).
    var_dir: the service's ``TURNSTILE_VAR_DIR``: its SQLite data, events and mails.
    """

    client: TestClient[web.Request, web.Application]
    var_dir: Path

    @property
    def app(self) -> web.Application:
        """The running application (its `AppKey`s: ``plugin_settings(service.app, ...)``)."""
        return self.client.app

    def events(self) -> list[dict[str, Any]]:
        """Every event published so far, oldest first, as its JSON body (``id``, ``type``,
        ``occurred_at``, ``request_id``, ``data``): read from ``events.jsonl``, where the
        embedded publisher writes each one before the request that caused it is answered."""
        path = self.var_dir / "events.jsonl"
        if not path.exists():
            return []
        return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]

    def mails(self) -> list[EmailMessage]:
        """Every mail sent so far, oldest first: the ``.eml`` files the embedded mail transport
        writes to ``mail/`` under `var_dir` (contract §13). Empty while no installed plugin
        sends mail."""
        folder = self.var_dir / "mail"
        if not folder.is_dir():
            return []
        return [
            email.message_from_bytes(path.read_bytes(), _class=EmailMessage, policy=email.policy.default)
            for path in sorted(folder.glob("*.eml"))
        ]


class StartService(Protocol):
    """The ``turnstile`` fixture: ``await turnstile(pipelines, plugins=..., env=...)``."""

    def __call__(
        self,
        pipelines: str | Path,
        *,
        plugins: Iterable[object] = (),
        env: Mapping[str, str] | None = None,
        entrypoints: bool = True,
    ) -> Awaitable[Service]:
        """Start the service.

        Args:
            pipelines: a pipelines file (a `Path`), or TOML text (a `str`) written to one.
            plugins: plugin objects or modules to register, or dotted module names, besides
                the installed ones (one already installed is not registered twice).
            env: the environment the service reads, instead of the process's: the core's
                variables and every plugin's (``TURNSTILE_DISABLE_PLUGINS`` too). Embedded
                defaults apply to what it does not set; ``TURNSTILE_VAR_DIR`` is the test's.
            entrypoints: load the installed plugins (the built-ins among them); False: only
                `plugins`.

        Raises:
            SettingsError: a variable is wrong (one line each, the plugins' included).
            PipelineFileError: the pipelines have errors (FILE:LINE: message each).
        """
        ...


@pytest.fixture
def turnstile(aiohttp_client: AiohttpClient, tmp_path: Path) -> StartService:
    """Start the whole service on embedded defaults; see `StartService`. Each call starts
    another instance on the same `var_dir` (a restart, when the test closed the first)."""
    var_dir = tmp_path / "var"
    numbers = itertools.count(1)

    async def start(
        pipelines: str | Path,
        *,
        plugins: Iterable[object] = (),
        env: Mapping[str, str] | None = None,
        entrypoints: bool = True,
    ) -> Service:
        if isinstance(pipelines, str):
            text, pipelines = pipelines, tmp_path / f"pipelines-{next(numbers)}.toml"
            pipelines.write_text(text)
        settings = load_settings({**(env or {}), "TURNSTILE_VAR_DIR": str(var_dir), "PIPELINES_FILE": str(pipelines)})
        pm = make_plugin_manager(
            entrypoints=entrypoints,
            extra=[importlib.import_module(p) if isinstance(p, str) else p for p in plugins],
            disabled=settings.disabled_plugins,
            trace=settings.trace_hooks,
            modules=settings.extra_plugins,
        )
        client = await aiohttp_client(create_app(settings, pm=pm))
        return Service(client, var_dir)

    return start
