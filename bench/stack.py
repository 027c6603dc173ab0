"""The processes a benchmark run needs: Redis and RabbitMQ (scripts/services.sh), the reference
data service, Turnstile and the baseline (each server under test pinned to the same core), and
Turnstile with several workers for the memory phase."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from app.dataservice.store import UserStore, utc_now
from bench import broker
from bench.baseline import CACHE_PREFIX as BASELINE_USER_PREFIX
from bench.broker import AmqpNames
from bench.ids import forget_cache_entries
from bench.server import ROOT, Server, free_port

SERVICES: Final = ROOT / "scripts" / "services.sh"
RABBITMQ_URL: Final = os.environ.get("BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
SERVER_CORE: Final = "0"
CIRCUIT_METRIC: Final = 'turnstile_circuit_state{upstream="data_service"}'
CIRCUIT_CLOSED: Final = 0.0
# Where Turnstile's cache step keeps `user:{id}` (the default pipelines' key).
TURNSTILE_USER_PREFIX: Final = "user:"
ADMIN_EMAIL: Final = "bench-admin@bench.example.com"
ADMIN_PASSWORD: Final = "bench-admin-password-1"  # a throw-away account of a throw-away database
SEED_PASSWORD_HASH: Final = "$argon2id$v=19$m=8,t=1,p=1$c2VlZGVkLXVzZXI$bm90LWEtcmVhbC1oYXNo"
# Limits lifted in the benchmark's copy of pipelines.toml: one load generator on one address
# is exactly what the limiters exist to refuse. The steps still run and count in Redis.
_LIMIT: Final = re.compile(r"(use = \"rate-limit\"[^}]*\blimit = )\d+")
LIFTED_LIMIT: Final = 1_000_000_000


def services(action: str, which: str, env: Mapping[str, str] | None = None) -> None:
    subprocess.run(["bash", str(SERVICES), action, which], check=True, timeout=180, env={**os.environ, **(env or {})})


def redis_env(workdir: Path, port: str) -> dict[str, str]:
    return {"TURNSTILE_REDIS_PORT": port, "TURNSTILE_SERVICES_DIR": str(workdir / "services")}


def bench_pipelines(path: Path, subscription_queue: str) -> Path:
    """The default pipelines with rate limits lifted and the run's own subscription queue."""
    text = (ROOT / "pipelines.toml").read_text()
    text = _LIMIT.sub(lambda m: f"{m.group(1)}{LIFTED_LIMIT}", text)
    path.write_text(text.replace("turnstile.user-changes", subscription_queue))
    return path


def seed_users(db: Path, count: int) -> None:
    """`count` users with ids 1..count straight into the data service's SQLite file (not over
    HTTP: a hundred thousand inserts that way would take longer than the benchmark)."""

    async def create_schema() -> None:
        store = await UserStore.open(db)
        await store.close()

    asyncio.run(create_schema())
    now = utc_now()
    rows = (
        (f"seed-{n}@bench.example.com", SEED_PASSWORD_HASH, f"Seed {n}", '["user"]', 1, now, now)
        for n in range(1, count + 1)
    )
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.executemany(
            "INSERT INTO users (email, password_hash, full_name, roles, is_active, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def flush_redis(url: str) -> None:
    subprocess.run(["redis-cli", "-u", url, "flushdb"], check=True, timeout=30, capture_output=True)


def call(url: str, method: str = "GET", body: Any = None, token: str | None = None) -> Any:
    """One JSON request for set-up; raises on a non-2xx answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=60) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def _circuit_state(url: str) -> float:
    """Turnstile's `turnstile_circuit_state` for the data service (0 closed, 1 half-open, 2 open)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(CIRCUIT_METRIC):
            return float(line.rpartition(" ")[2])
    return CIRCUIT_CLOSED  # no call has made one yet


class Stack:
    """Everything one run starts, stopped in reverse by `close()`."""

    def __init__(self, workdir: Path, seed: int) -> None:
        self.workdir = workdir
        self.secret = secrets.token_urlsafe(48)
        # The data service's credential, as production requires one: passed to it in a file
        # (never on a command line, where `ps` shows it), to Turnstile and the baseline in
        # their environment.
        self.data_token = secrets.token_urlsafe(32)
        self.seeded = seed
        self.amqp = AmqpNames.unique()
        self.servers: list[Server] = []
        self.own_redis = False
        # Its own Redis server (scripts/services.sh on another port), so outage tests that stop
        # the shared one cannot break a run, a run never touches the tests' keys, and two runs
        # at once never share one: a free port unless BENCH_REDIS_PORT names one.
        self.redis_port = os.environ.get("BENCH_REDIS_PORT") or str(free_port())

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def start(self) -> None:
        services("start", "redis", redis_env(self.workdir, self.redis_port))
        self.own_redis = True
        services("start", "rabbitmq")
        flush_redis(self.redis_url)
        broker.setup(RABBITMQ_URL, self.amqp)
        db = self.workdir / "data.sqlite3"
        seed_users(db, self.seeded)
        token_file = self.workdir / "data-service-token"
        token_file.write_text(self.data_token)
        token_file.chmod(0o600)
        python = sys.executable
        self.data = self._start(
            "dataservice",
            [python, "-m", "app", "dataservice", "--port", str(free_port()), "--db", str(db),
             "--token-file", str(token_file)],
            "/healthz",
        )
        self.turnstile = self._start("turnstile", [python, "-m", "app", "serve"], "/readyz", core=SERVER_CORE,
                                     env=self._turnstile_env())
        self.baseline = self._start(
            "baseline",
            [python, "-m", "bench.baseline", "--redis-url", self.redis_url, "--data-url", self.data.url,
             "--amqp-url", RABBITMQ_URL, "--exchange", self.amqp.exchange],
            "/healthz", core=SERVER_CORE, env={"JWT_SECRET": self.secret, "DATA_SERVICE_TOKEN": self.data_token},
        )

    def start_consuming_baseline(self) -> Server:
        """A second baseline (same core) that also consumes its own events as Turnstile's
        default subscriptions do (bench/baseline_consumers.py), under a routing key of its own.
        The caller stops it."""
        return self._start(
            "baseline-consuming",
            [sys.executable, "-m", "bench.baseline", "--redis-url", self.redis_url, "--data-url", self.data.url,
             "--amqp-url", RABBITMQ_URL, "--exchange", self.amqp.exchange,
             "--routing-key", "baseline-consuming.user.updated", "--consume-events", self.amqp.baseline_queue],
            "/healthz", core=SERVER_CORE, env={"JWT_SECRET": self.secret, "DATA_SERVICE_TOKEN": self.data_token},
        )

    def start_workers(self, workers: int) -> Server:
        """Turnstile with `--workers N` (not pinned: the workers share both cores), once every
        worker listens."""
        server = self._start("turnstile-workers", [sys.executable, "-m", "app", "serve", "--workers", str(workers)],
                             "/readyz", env=self._turnstile_env())
        server.wait_log("listening on", workers)
        return server

    def start_variant(self, name: str, env: Mapping[str, str]) -> Server:
        """Another Turnstile like the measured one (same settings, same core) with `env` on top:
        for a scenario that compares a setting. The caller stops it."""
        return self._start(name, [sys.executable, "-m", "app", "serve"], "/readyz", core=SERVER_CORE,
                           env={**self._turnstile_env(), **env})

    def start_otlp_sink(self) -> Server:
        """A stand-in OTLP/HTTP collector that accepts every export (bench/otlp_sink.py)."""
        return self._start("otlp-sink", [sys.executable, "-m", "bench.otlp_sink"], "/healthz")

    def _start(self, name: str, argv: list[str], ready: str, *, core: str | None = None,
               env: Mapping[str, str] | None = None) -> Server:
        port = free_port()
        if name != "dataservice":
            argv = [*argv, "--port", str(port)]
        else:
            port = int(argv[argv.index("--port") + 1])
        server = Server(name, argv, port, log=self.workdir / f"{name}.log", env=env or {}, core=core)
        self.servers.append(server)
        server.wait_ready(ready)
        return server

    def _turnstile_env(self) -> dict[str, str]:
        # Production settings as an operator runs them: JSON logs at INFO (one access line per
        # request), real argon2 costs, every dependency real. Only the drain on stop is short.
        return {
            "TURNSTILE_ENV": "production",
            "HOST": "127.0.0.1",
            "LOG_LEVEL": "INFO",
            "DATA_SERVICE_URL": self.data.url,
            "DATA_SERVICE_TOKEN": self.data_token,
            "REDIS_URL": self.redis_url,
            "RABBITMQ_URL": RABBITMQ_URL,
            "EVENTS_EXCHANGE": self.amqp.exchange,
            "JWT_SECRET": self.secret,
            "ACCESS_TOKEN_TTL_S": "3600",  # outlives a full run
            "TURNSTILE_ADMIN_EMAIL": ADMIN_EMAIL,
            "TURNSTILE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "TURNSTILE_DRAIN_SECONDS": "0.5",
            "PIPELINES_FILE": str(bench_pipelines(self.workdir / "pipelines.toml", self.amqp.subscription_queue)),
            "TURNSTILE_VAR_DIR": str(self.workdir / "var"),
            # Production wants a real mail server; no scenario sends mail (none registers).
            "SMTP_URL": "smtp://127.0.0.1:25",
            "MAIL_FROM": "Bench <bench@localhost>",
            "PUBLIC_URL": "http://127.0.0.1",
        }

    def forget_users(self, upto: int) -> None:
        """Delete Turnstile's and the baseline's cache entries of users 1..upto (between runs)."""
        forget_cache_entries(self.redis_url, (TURNSTILE_USER_PREFIX, BASELINE_USER_PREFIX), upto)
        # Turnstile's mirror hears of each deletion: let it catch up before anything is measured.
        self.turnstile.settle()

    def recover(self, token: str, timeout_s: float = 60.0) -> None:
        """Wait until Turnstile is idle and its data-service circuit is closed again: an
        overload (argon2 queues, a circuit it opened) must not bill the next scenario. An open
        circuit lets a probe through only when a call comes, so one is sent each second."""
        self.turnstile.settle()
        deadline = time.monotonic() + timeout_s
        while _circuit_state(self.turnstile.url) != CIRCUIT_CLOSED:
            if time.monotonic() > deadline:
                msg = f"Turnstile's data-service circuit still not closed after {timeout_s:.0f} s"
                raise RuntimeError(msg)
            with contextlib.suppress(OSError):  # urllib's errors included: a refusal is expected
                call(f"{self.turnstile.url}/api/v1/auth/me", token=token)
            time.sleep(1)

    def login(self, email: str, password: str) -> str:
        tokens = call(f"{self.turnstile.url}/api/v1/auth/login", "POST", {"email": email, "password": password})
        token: str = tokens["access_token"]
        return token

    def close(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        with contextlib.suppress(Exception):
            broker.teardown(RABBITMQ_URL, self.amqp)
        if self.own_redis:
            with contextlib.suppress(Exception):
                services("stop", "redis", redis_env(self.workdir, self.redis_port))


@contextlib.contextmanager
def running_stack(workdir: Path, seed: int) -> Iterator[Stack]:
    stack = Stack(workdir, seed)
    try:
        stack.start()
        yield stack
    finally:
        stack.close()
