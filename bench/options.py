"""How long and how hard one benchmark run drives each scenario."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import attrs

from bench import wrk


@attrs.frozen
class Options:
    """duration, warmup: seconds per measured run and of warm-up before it.
    rounds: alternating rounds of Turnstile and its baselines (each keeps its best).
    rss_requests: mixed requests (cached, uncached, PATCH) between the two RSS readings.
    seed: users seeded into the data service (raised to what the uncached reads need).
    slow_duration, slow_connections: create, login and the login storm (argon2 at production
    cost: quick mode uses few connections, or no request would finish within the run).
    workers, workers_seconds: the `--workers N` memory phase.
    profile: py-spy samples of the first cached and uncached rounds go here.
    """

    duration: float
    warmup: float
    rounds: int
    rss_requests: int
    seed: int
    slow_duration: float
    slow_connections: int
    workers: int = 2
    workers_seconds: float = 5.0
    profile: Path | None = None


FULL: Final = Options(duration=10, warmup=3, rounds=2, rss_requests=200_000, seed=100_000,
                      slow_duration=10, slow_connections=wrk.CONNECTIONS)
QUICK: Final = Options(duration=1, warmup=1, rounds=1, rss_requests=1_000, seed=5_000,
                       slow_duration=3, slow_connections=2, workers_seconds=1)
