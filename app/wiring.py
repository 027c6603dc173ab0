"""The clients a process holds (data service, Redis, cache, publisher), made from settings.

Objects are created here without I/O, so steps can capture them at build time; each is
started and stopped by its own cleanup_ctx and reports to /readyz.
"""

from __future__ import annotations

from aiohttp import web

from app.settings import Settings


def setup_clients(app: web.Application, settings: Settings) -> None:
    """Create every client and register its start/stop."""
