"""Real /metrics scrapes of the running service under the conditions the alerts are for.

A scenario starts the whole service (the `stack` fixture) in one condition (healthy, data service
down, Redis down, broker down, a password-guessing client, a plugin blocking the event loop),
scrapes /metrics, drives a burst of
traffic, and scrapes again. `input_series` turns the two scrapes into `promtool test rules`
input: every series the service exported, labelled as Prometheus labels a scraped pod, with the
burst repeated every minute, as if the condition lasted.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
from prometheus_client.parser import text_string_to_metric_families

from app import hookimpl
from app.dataservice import start_dataservice
from app.keys import data_service_key, settings_key
from app.reload import Outcome, reload_pipelines
from tests.app.test_cli import free_port
from tests.integration.conftest import (
    Client,
    StackFactory,
    admin_headers,
    bearer,
    login,
    register,
)
from tests.integration.faults import FaultProxy
from tests.services import flush_redis

# The labels Prometheus gives what it scrapes through the chart's ServiceMonitor: its job is the
# name of the Service it selects, the chart's metrics Service (release "shop", namespace "apps").
NAMESPACE = "apps"
JOB = "shop-turnstile-metrics"
PODS = ("shop-turnstile-7d9f-a", "shop-turnstile-7d9f-b")
TARGET_LABELS = frozenset({"namespace", "job", "pod", "instance", "service", "container", "endpoint"})
# Each promtool step is a minute of the condition: the scraped burst, once more.
STEPS = 60

Labels = frozenset[tuple[str, str]]
# Gauges each upstream client sets for itself: only this instance's count.
_PER_CLIENT = frozenset({"turnstile_circuit_state", "turnstile_upstream_reachability"})


@attrs.frozen
class Sample:
    name: str
    labels: Labels
    value: float
    kind: str  # the family's type: counter, gauge, histogram, ...

    def label(self, name: str) -> str | None:
        return dict(self.labels).get(name)


Scrape = dict[tuple[str, Labels], Sample]


async def scrape(client: Client) -> Scrape:
    """The service's /metrics, as it answers it, minus the `_created` timestamps and the circuit
    breakers of other instances: the metrics live in one registry per process, and this test
    process has run other instances before (with upstreams of their own), where a pod has one."""
    resp = await client.get("/metrics")
    assert resp.status == 200
    upstreams = {client.app[data_service_key].name}
    samples: Scrape = {}
    for family in text_string_to_metric_families(await resp.text()):
        for name, labels, value, *_ in family.samples:
            if name.endswith("_created"):
                continue
            if name in _PER_CLIENT and labels["upstream"] not in upstreams:
                continue
            sample = Sample(name, frozenset(labels.items()), float(value), family.type)
            samples[(name, sample.labels)] = sample
    return samples


@attrs.frozen
class Observed:
    """Two scrapes of one service around a burst of traffic."""

    before: Scrape
    after: Scrape

    def increase(self, name: str, **labels: str) -> float:
        """How much the samples named `name` with these labels grew during the burst."""
        wanted = set(labels.items())
        return sum(
            s.value - (self.before[key].value if key in self.before else 0.0)
            for key, s in self.after.items()
            if s.name == name and wanted <= s.labels
        )


def _values(start: float, step: float) -> str:
    """promtool's expanding notation: `start`, then `step` more each minute."""
    sign = "+" if step >= 0 else "-"
    return f"{start:.6f}{sign}{abs(step):.6f}x{STEPS}"


def _series(name: str, labels: Labels, pod: str) -> str:
    target = {"namespace": NAMESPACE, "job": JOB, "pod": pod, "instance": f"{pod}:8080"}
    pairs = sorted({**dict(labels), **target}.items())
    inner = ", ".join(f'{key}="{value}"' for key, value in pairs)
    return f"{name}{{{inner}}}"


def input_series(observed: Observed) -> list[dict[str, str]]:
    """promtool input for two pods in the scraped condition.

    Counters (and histogram parts) grow by the burst each minute. Gauges hold their last value,
    but for the outbox depth, whose growth is the condition itself: it grows by the burst's change
    on the first pod, while the second pod, publishing nothing, keeps reporting what it saw
    before (every pod reports the one shared list, but only when it looks). Each pod answered
    its scrapes: `up` is 1, as Prometheus records it beside what it scraped.
    """
    out: list[dict[str, str]] = [
        {"series": _series("up", frozenset(), pod), "values": _values(1, 0)} for pod in PODS
    ]
    for key, sample in sorted(observed.after.items()):
        start = observed.before[key].value if key in observed.before else 0.0
        for pod in PODS:
            if sample.kind == "gauge" and sample.name == "turnstile_outbox_depth":
                values = _values(start, sample.value - start) if pod == PODS[0] else _values(start, 0)
            elif sample.kind == "gauge":
                values = _values(sample.value, 0)
            else:
                values = _values(start, sample.value - start)
            out.append({"series": _series(sample.name, sample.labels, pod), "values": values})
    return out


# --- the scenarios ----------------------------------------------------------------------------

Traffic = Callable[[Client], Awaitable[None]]


async def _observe(client: Client, traffic: Traffic) -> Observed:
    before = await scrape(client)
    await traffic(client)
    return Observed(before, await scrape(client))


def closed_port_url(scheme: str, suffix: str = "") -> str:
    """A URL where nothing listens: the dependency is down."""
    return f"{scheme}127.0.0.1:{free_port()}{suffix}"


async def healthy(stack: StackFactory, deps: dict[str, Any]) -> Observed:
    """Sign-ups, logins, cached reads, a change (its event consumed back), a wrong password, a 404."""

    async def traffic(client: Client) -> None:
        user = await register(client, "ann@example.com")
        tokens = await login(client, "ann@example.com", "correct-horse-1")
        await login(client, "ann@example.com", "correct-horse-1")
        for _ in range(6):
            resp = await client.get(f"/api/v1/users/{user['id']}", headers=bearer(tokens))
            assert resp.status == 200, await resp.text()
        change = {"full_name": "Ann Smith"}
        resp = await client.patch(f"/api/v1/users/{user['id']}", json=change, headers=await admin_headers(client))
        assert resp.status == 200, await resp.text()
        resp = await client.post("/api/v1/auth/login", json={"email": "ann@example.com", "password": "wrong-horse"})
        assert resp.status == 401
        assert (await client.get("/nowhere")).status == 404

    client = await stack(**deps)
    observed = await _observe(client, traffic)
    # the subscription consumes the change's event back (briefly waited for)
    for _ in range(50):
        if observed.increase("turnstile_events_consumed_total", outcome="acked") > 0:
            break
        await asyncio.sleep(0.1)
        observed = Observed(observed.before, await scrape(client))
    return observed


async def password_guessing(stack: StackFactory, deps: dict[str, Any]) -> Observed:
    """One client guessing one account's password: 401s, then 429s; its owner logged in first."""

    async def traffic(client: Client) -> None:
        await register(client, "bob@example.com")
        await login(client, "bob@example.com", "correct-horse-1")
        statuses = []
        for n in range(20):
            body = {"email": "bob@example.com", "password": f"guess-{n}"}
            statuses.append((await client.post("/api/v1/auth/login", json=body)).status)
        assert set(statuses) == {401, 429}, statuses

    return await _observe(await stack(**deps), traffic)


async def data_service_down(stack: StackFactory, deps: dict[str, Any]) -> Observed:
    """Sign-ups and logins while nothing answers at the data service's address."""

    async def traffic(client: Client) -> None:
        for n in range(8):
            body = {"email": f"u{n}@example.com", "password": "correct-horse-1"}
            resp = await client.post("/api/v1/auth/register", json=body)
            assert resp.status == 503, await resp.text()
            resp = await client.post("/api/v1/auth/login", json=body)
            assert resp.status == 503, await resp.text()

    # no start-up admin: it would need the data service
    no_admin = {"TURNSTILE_ADMIN_EMAIL": "", "TURNSTILE_ADMIN_PASSWORD": ""}
    return await _observe(await stack(no_admin, **deps, data_service_url=closed_port_url("http://")), traffic)


async def redis_down(stack: StackFactory, deps: dict[str, Any]) -> Observed:
    """A sign-up, cached reads and logins while nothing answers at Redis's address. The reader
    logged in before the outage, on an instance that reached Redis; logins need Redis for their
    sessions, so they answer 503."""
    before_outage = await stack(**deps)
    reader = await register(before_outage, "cy@example.com")
    tokens = await login(before_outage, "cy@example.com", "correct-horse-1")

    async def traffic(client: Client) -> None:
        await register(client, "dan@example.com")
        for _ in range(6):
            resp = await client.get(f"/api/v1/users/{reader['id']}", headers=bearer(tokens))
            assert resp.status == 200, await resp.text()
            assert resp.headers["X-Cache"] == "BYPASS"
        body = {"email": "dan@example.com", "password": "correct-horse-1"}
        assert (await client.post("/api/v1/auth/login", json=body)).status == 503

    down = {"redis_url": closed_port_url("redis://", "/0")}
    return await _observe(await stack(**{**deps, **down}), traffic)


async def broker_down(stack: StackFactory, deps: dict[str, Any]) -> Observed:
    """Sign-ups while nothing answers at RabbitMQ's address: their events wait in the outbox."""

    async def traffic(client: Client) -> None:
        for n in range(5):
            await register(client, f"dee{n}@example.com")

    down = {"rabbitmq_url": closed_port_url("amqp://guest:guest@", "/")}
    return await _observe(await stack(**{**deps, **down}), traffic)


async def token_refused(stack: StackFactory, deps: dict[str, Any]) -> Observed:
    """Sign-ups while the data service refuses the token Turnstile sends (a rotation gone wrong)."""

    async def traffic(client: Client) -> None:
        for n in range(8):
            body = {"email": f"t{n}@example.com", "password": "correct-horse-1"}
            resp = await client.post("/api/v1/auth/register", json=body)
            assert resp.status == 502, await resp.text()

    with tempfile.TemporaryDirectory() as tmp:
        runner, url = await start_dataservice(Path(tmp) / "data.sqlite3", token="the-data-services-own-token")
        try:
            no_admin = {"TURNSTILE_ADMIN_EMAIL": "", "TURNSTILE_ADMIN_PASSWORD": ""}
            client = await stack(no_admin, **deps, data_service_url=url, data_service_token="a-token-it-does-not-take")
            return await _observe(client, traffic)
        finally:
            await runner.cleanup()


async def data_service_slow(stack: StackFactory, deps: dict[str, Any]) -> Observed:
    """Sign-ups while the data service answers, but only after 1.5 s (its timeout is 5 s)."""
    proxy: FaultProxy

    async def traffic(client: Client) -> None:
        proxy.mode = "slow"
        bodies = [{"email": f"s{n}@example.com", "password": "correct-horse-1"} for n in range(4)]
        answers = await asyncio.gather(*(client.post("/api/v1/auth/register", json=body) for body in bodies))
        assert [resp.status for resp in answers] == [201] * 4, [await resp.text() for resp in answers]

    with tempfile.TemporaryDirectory() as tmp:
        runner, url = await start_dataservice(Path(tmp) / "data.sqlite3", token="the-data-services-token")
        proxy = FaultProxy(url, slow_s=1.5)
        await proxy.start()
        try:
            client = await stack(**deps, data_service_url=proxy.url, data_service_token="the-data-services-token")
            return await _observe(client, traffic)
        finally:
            await proxy.close()
            await runner.cleanup()


async def reload_refused(stack: StackFactory, deps: dict[str, Any]) -> Observed:
    """A SIGHUP's reload of a pipelines file that now has an error (the pod keeps the old one)."""
    client = await stack(**deps)
    path = client.app[settings_key].pipelines_file
    good = path.read_text()

    async def traffic(client: Client) -> None:
        path.write_text(good.replace('use = "data-fetch"', 'use = "data-fetchh"', 1))
        try:
            assert await reload_pipelines(client.app) is Outcome.INVALID
        finally:
            path.write_text(good)
        assert (await client.get("/healthz")).status == 200

    return await _observe(client, traffic)


async def redis_data_lost(stack: StackFactory, deps: dict[str, Any]) -> Observed:
    """Redis emptied under a running pod that had counted session-ending writes (a flush, a
    restart without its data): the pod notices the count gone down and ends every session."""
    client = await stack(**deps)
    await register(client, "fay@example.com")

    async def traffic(client: Client) -> None:
        tokens = await login(client, "fay@example.com", "correct-horse-1")
        resp = await client.post("/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]},
                                 headers=bearer(tokens))
        assert resp.status == 204, await resp.text()  # a counted write: the count is above 0
        await flush_redis(deps["redis_url"])
        for _ in range(100):  # the pod reads the count every second
            if observed_rollbacks(await scrape(client)) > rollbacks_before:
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the pod did not notice that Redis lost its writes")

    rollbacks_before = observed_rollbacks(await scrape(client))
    return await _observe(client, traffic)


def observed_rollbacks(samples: Scrape) -> float:
    return sum(s.value for s in samples.values() if s.name == "turnstile_auth_redis_rollbacks_total")


class BlockingRule:
    """A team's `def` rule calling a slow service with a blocking client, on one route."""

    @hookimpl
    def check_request(self, pipeline: Any) -> None:
        if pipeline.name == "me":
            # The event loop, and every request of the process, waits. The lag timer may come
            # due up to its 0.25 s period into the sleep: 1.5 s makes it over a second late.
            time.sleep(1.5)


async def loop_blocked(stack: StackFactory, deps: dict[str, Any]) -> Observed:
    """Reads of the caller's own user through a route whose business rule blocks the loop."""
    client = await stack(**deps, plugins=(BlockingRule(),))
    await register(client, "eve@example.com")
    tokens = await login(client, "eve@example.com", "correct-horse-1")

    async def traffic(client: Client) -> None:
        for _ in range(2):
            assert (await client.get("/api/v1/auth/me", headers=bearer(tokens))).status == 200
        await asyncio.sleep(0.3)  # the late timer runs, and is counted

    return await _observe(client, traffic)


Scenario = Callable[[StackFactory, dict[str, Any]], Awaitable[Observed]]
SCENARIOS: dict[str, Scenario] = {
    "healthy": healthy,
    "password-guessing": password_guessing,
    "data-service-down": data_service_down,
    "redis-down": redis_down,
    "broker-down": broker_down,
    "token-refused": token_refused,
    "loop-blocked": loop_blocked,
    "data-service-slow": data_service_slow,
    "reload-refused": reload_refused,
    "redis-data-lost": redis_data_lost,
}


async def observe(stack: StackFactory, scenario: str, redis_db: str, amqp_url: str) -> Observed:
    """Run `scenario` against the real Redis and RabbitMQ (but for the one it takes down)."""
    return await SCENARIOS[scenario](stack, {"redis_url": redis_db, "rabbitmq_url": amqp_url})
