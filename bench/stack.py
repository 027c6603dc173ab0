"""The processes a benchmark run needs: Redis and RabbitMQ (scripts/services.sh), the reference
data service, Turnstile and the baseline; each server under test pinned to its own core."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Final

import aiormq

from app.dataservice.store import UserStore, utc_now

ROOT: Final = Path(__file__).resolve().parent.parent
SERVICES: Final = ROOT / "scripts" / "services.sh"
# Its own Redis server (started through scripts/services.sh on another port), so outage tests
# that stop the shared one cannot break a run, and a run never touches the tests' keys.
REDIS_PORT: Final = os.environ.get("BENCH_REDIS_PORT", "6390")
REDIS_URL: Final = f"redis://127.0.0.1:{REDIS_PORT}/0"
RABBITMQ_URL: Final = os.environ.get("BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
EXCHANGE: Final = "bench.users"
EVENTS_QUEUE: Final = "bench.events"
SUBSCRIPTION_QUEUE: Final = "bench.user-changes"
SERVER_CORE: Final = "0"
ADMIN_EMAIL: Final = "bench-admin@bench.example.com"
ADMIN_PASSWORD: Final = "bench-admin-password-1"  # a throw-away account of a throw-away database
SEED_PASSWORD_HASH: Final = "$argon2id$v=19$m=8,t=1,p=1$c2VlZGVkLXVzZXI$bm90LWEtcmVhbC1oYXNo"
# Limits lifted in the benchmark's copy of pipelines.toml: one load generator on one address
# is exactly what the limiters exist to refuse. The steps still run and count in Redis.
_LIMIT: Final = re.compile(r"(use = \"rate-limit\"[^}]*\blimit = )\d+")
LIFTED_LIMIT: Final = 1_000_000_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def services(action: str, which: str, env: Mapping[str, str] | None = None) -> None:
    subprocess.run(["bash", str(SERVICES), action, which], check=True, timeout=180, env={**os.environ, **(env or {})})


def redis_env(workdir: Path) -> dict[str, str]:
    return {"TURNSTILE_REDIS_PORT": REDIS_PORT, "TURNSTILE_SERVICES_DIR": str(workdir / "services")}


def bench_pipelines(path: Path) -> Path:
    """The default pipelines with rate limits lifted and the bench's own subscription queue."""
    text = (ROOT / "pipelines.toml").read_text()
    text = _LIMIT.sub(lambda m: f"{m.group(1)}{LIFTED_LIMIT}", text)
    path.write_text(text.replace("turnstile.user-changes", SUBSCRIPTION_QUEUE))
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


async def _amqp(action: str) -> None:
    connection = await aiormq.connect(RABBITMQ_URL)
    try:
        channel = await connection.channel()
        if action == "setup":
            # Every event is routable, as with real consumers; the queue keeps only the newest.
            await channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
            await channel.queue_declare(
                EVENTS_QUEUE, durable=False,
                arguments={"x-max-length": 1000, "x-overflow": "drop-head", "x-expires": 3_600_000},
            )
            await channel.queue_bind(EVENTS_QUEUE, EXCHANGE, routing_key="#")
        else:
            for queue in (EVENTS_QUEUE, SUBSCRIPTION_QUEUE):
                await channel.queue_delete(queue)
            await channel.exchange_delete(EXCHANGE)
    finally:
        await connection.close()


def amqp(action: str) -> None:
    asyncio.run(_amqp(action))


def flush_redis() -> None:
    subprocess.run(
        ["redis-cli", "-u", REDIS_URL, "flushdb"], check=True, timeout=30, capture_output=True
    )


class Server:
    """One child process (optionally pinned to a core), its log file and its port."""

    def __init__(self, name: str, argv: list[str], port: int, *, log: Path, env: Mapping[str, str],
                 core: str | None = None) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log
        pin = ["taskset", "-c", core] if core is not None else []
        self._log: IO[bytes] = log.open("wb")
        # taskset execs the program, so the pid is the server's own.
        self.proc = subprocess.Popen(
            [*pin, *argv], cwd=ROOT, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, path: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                msg = f"{self.name} exited with {self.proc.returncode}; see its log:\n{self.tail()}"
                raise RuntimeError(msg)
            with contextlib.suppress(OSError, urllib.error.URLError), \
                    urllib.request.urlopen(self.url + path, timeout=2) as resp:
                if resp.status == 200:
                    return
            time.sleep(0.2)
        msg = f"{self.name} not ready on {path} within {timeout_s:.0f} s:\n{self.tail()}"
        raise RuntimeError(msg)

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        msg = f"no VmRSS for {self.name}"
        raise RuntimeError(msg)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def settle(self, timeout_s: float = 120.0) -> None:
        """Wait until the server is idle (< 5% of a core over 0.5 s): a scenario whose wrk run
        ended with requests in flight (argon2 queues) must not bill the next one."""
        deadline = time.monotonic() + timeout_s
        before = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.cpu_seconds()
            if now - before < 0.025:
                return
            before = now


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


class Stack:
    """Everything one run starts, stopped in reverse by `close()`."""

    def __init__(self, workdir: Path, seed: int) -> None:
        self.workdir = workdir
        self.secret = secrets.token_urlsafe(48)
        # The data service's credential, as production requires one: passed to it in a file
        # (never on a command line, where `ps` shows it) and to Turnstile in its environment.
        self.data_token = secrets.token_urlsafe(32)
        self.seeded = seed
        self.servers: list[Server] = []
        self.own_redis = False

    def start(self) -> None:
        services("start", "redis", redis_env(self.workdir))
        self.own_redis = True
        services("start", "rabbitmq")
        flush_redis()
        amqp("setup")
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
        self.baseline = self._start("baseline", [python, "-m", "bench.baseline", "--redis-url", REDIS_URL],
                                    "/healthz", core=SERVER_CORE, env={"JWT_SECRET": self.secret})

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
        # request), real argon2 costs, every dependency real.
        return {
            "TURNSTILE_ENV": "production",
            "HOST": "127.0.0.1",
            "LOG_LEVEL": "INFO",
            "DATA_SERVICE_URL": self.data.url,
            "DATA_SERVICE_TOKEN": self.data_token,
            "REDIS_URL": REDIS_URL,
            "RABBITMQ_URL": RABBITMQ_URL,
            "EVENTS_EXCHANGE": EXCHANGE,
            "JWT_SECRET": self.secret,
            "ACCESS_TOKEN_TTL_S": "3600",  # outlives a full run
            "TURNSTILE_ADMIN_EMAIL": ADMIN_EMAIL,
            "TURNSTILE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "PIPELINES_FILE": str(bench_pipelines(self.workdir / "pipelines.toml")),
            "TURNSTILE_VAR_DIR": str(self.workdir / "var"),
            # Production wants a real mail server; no scenario sends mail (none registers).
            "SMTP_URL": "smtp://127.0.0.1:25",
            "MAIL_FROM": "Bench <bench@localhost>",
            "PUBLIC_URL": "http://127.0.0.1",
        }

    def login(self, email: str, password: str) -> str:
        tokens = call(f"{self.turnstile.url}/api/v1/auth/login", "POST", {"email": email, "password": password})
        token: str = tokens["access_token"]
        return token

    def close(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        with contextlib.suppress(Exception):
            amqp("teardown")
        if self.own_redis:
            with contextlib.suppress(Exception):
                services("stop", "redis", redis_env(self.workdir))


@contextlib.contextmanager
def running_stack(workdir: Path, seed: int) -> Iterator[Stack]:
    stack = Stack(workdir, seed)
    try:
        stack.start()
        yield stack
    finally:
        stack.close()
