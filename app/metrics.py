"""The core's Prometheus metrics (clients define their own beside their code) and /metrics."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    PLATFORM_COLLECTOR,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from app.resources import PLUGIN_GAUGES
from app.workers import RESTARTED_ENV, read_worker_pids

# prometheus_client's python_info names the interpreter's exact version, and no answer of the
# service names the versions of its software (contract §4): /metrics is as open as the rest.
with contextlib.suppress(KeyError):  # already gone (the module imported twice, as in some tests)
    REGISTRY.unregister(PLATFORM_COLLECTOR)
# A `_created` gauge beside every counter and histogram child (the time it was made) doubles
# the series a scrape carries for nothing PromQL's rate() needs.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated

# Buckets from 1 ms: a cached read is a few ms, an argon2 hash ~100 ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("turnstile_requests_total", "HTTP requests answered", ["pipeline", "method", "status"])
REQUEST_SECONDS = Histogram(
    "turnstile_request_seconds", "Time to answer a request", ["pipeline", "status"], buckets=LATENCY_BUCKETS
)
STEP_SECONDS = Histogram(
    "turnstile_step_seconds",
    "Time spent in a pipeline step, the steps inside it included",
    ["pipeline", "step"],
    buckets=LATENCY_BUCKETS,
)


# Set by `turnstile serve --workers N` for its workers (app/serve.py): where each keeps its metrics.
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

# Under --workers N: workers started again after one ended unasked (a crash, the OOM killer).
# The container is not restarted, so Kubernetes' restart count never shows them.
WORKER_RESTARTS = Counter(
    "turnstile_worker_restarts_total",
    "Workers of --workers N started again after one ended unasked, by how it ended (signal, error)",
    ["reason"],
)


def count_worker_restart() -> None:
    """Called as a worker starts: counts it when the supervisor started it again."""
    reason = os.environ.get(RESTARTED_ENV)
    if reason in ("signal", "error"):
        WORKER_RESTARTS.labels(reason=reason).inc()


def _constant(pid: int) -> Callable[[], int]:
    return lambda: pid


class WorkerProcesses(Collector):
    """prometheus_client's process metrics (CPU, memory, descriptors, start time) of every running
    worker, labelled with its number: its own collector reports the answering worker alone, and
    the shared registry of --workers N had none at all."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for number, pid in sorted(read_worker_pids(self.directory).items()):
            collector = ProcessCollector(pid=_constant(pid), registry=None)
            for family in collector.collect():
                merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "worker": str(number)}, sample.value)
        return list(families.values())


async def metrics_handler(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest(_registry()))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def _registry() -> CollectorRegistry:
    """This process's metrics, or under `--workers N` every worker's, summed from their files:
    a scrape reaches one worker, and must see the whole. A plugin's own gauges
    (`Resources.gauge`, read at each scrape) are the answering worker's."""
    directory = os.environ.get(MULTIPROC_ENV)
    return _workers_registry(directory) if directory else REGISTRY


@functools.cache
def _workers_registry(directory: str) -> CollectorRegistry:
    """Made once per directory: its collector reads the workers' files at each scrape."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]  # unannotated
    registry.register(WorkerProcesses(Path(directory)))
    registry.register(PLUGIN_GAUGES)
    return registry
