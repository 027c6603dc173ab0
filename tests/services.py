"""Where the tests find the real Redis and RabbitMQ, and how they stop and start them.

The test command (scripts/test.sh) starts both servers; outage tests stop and start them
through scripts/services.sh, the same script, so what they do is what an operator would do.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICES_SCRIPT = ROOT / "scripts" / "services.sh"

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=1):
            return True
    except OSError:
        return False


def require(url: str, what: str) -> str:
    """The URL when the server answers; in CI a missing server fails, locally it skips."""
    if reachable(url):
        return url
    msg = f"{what} is not reachable at {url}; run scripts/services.sh start"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def _run(action: str, service: str) -> None:
    subprocess.run(["bash", str(SERVICES_SCRIPT), action, service], check=True, timeout=120)


async def stop_service(service: str) -> None:
    """Stop `redis` or `rabbitmq` for an outage test (blocks a thread, not the loop)."""
    await asyncio.to_thread(_run, "stop", service)


async def start_service(service: str) -> None:
    await asyncio.to_thread(_run, "start", service)
