"""The measured scenarios: each drives Turnstile and, where one can exist, its baseline, in
alternating rounds of the same run, and returns table rows."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Final

import attrs

from bench import hash_waits, profile, wrk
from bench.hash_waits import HashWaits
from bench.ids import FreshIds
from bench.options import Options
from bench.results import TURNSTILE, Row
from bench.server import Server
from bench.stack import Stack

LOGIN_EMAIL: Final = "bench-login@bench.example.com"
LOGIN_PASSWORD: Final = "bench-login-password-1"
PATCH_IDS: Final = 1000  # the last ids of the seeded range; the uncached reads take the rest
# argon2 at production cost queues requests for seconds at 64 connections: wrk must wait.
SLOW_TIMEOUT_S: Final = 120.0
# The login storm starts this long before the cached read beside it and ends this long after.
STORM_LEAD_S: Final = 1.0
PROFILED: Final = frozenset({TURNSTILE, "baseline"})
TRACING: Final = "cached GET, traced"


@attrs.frozen
class Contender:
    """One server in a scenario: `key` names it in files, `label` in the table."""

    key: str
    label: str
    server: Server
    drive: Callable[[float], wrk.Result]


def alternating(contenders: Sequence[Contender], opts: Options, profile_as: str | None = None) -> dict[str, wrk.Result]:
    """Each contender in turn, `rounds` times (a warm-up then a measured run); each keeps its
    best round. Turnstile and the baseline's first round is sampled with py-spy on request."""
    best: dict[str, wrk.Result] = {}
    for index in range(opts.rounds):
        for c in contenders:
            c.drive(opts.warmup)
            if opts.profile is not None and profile_as is not None and index == 0 and c.key in PROFILED:
                out = opts.profile / f"{profile_as}-{c.key}.txt"
                with profile.sampled(c.server.pid, opts.duration, out):
                    result = c.drive(opts.duration)
                (opts.profile / f"{profile_as}-{c.key}-top.txt").write_text(profile.summary(out))
            else:
                result = c.drive(opts.duration)
            c.server.settle()
            if c.key not in best or result.rps > best[c.key].rps:
                best[c.key] = result
    return best


def compared(scenario: str, contenders: Sequence[Contender], best: dict[str, wrk.Result]) -> list[Row]:
    """Turnstile's row, then one row per other contender with Turnstile's req/s ÷ its own."""
    ours = best[TURNSTILE]
    rows = [Row(scenario, TURNSTILE, TURNSTILE, ours)]
    for c in contenders:
        if c.key != TURNSTILE:
            theirs = best[c.key]
            rows.append(Row(scenario, c.key, c.label, theirs, ratio=ours.rps / theirs.rps if theirs.rps else 0.0))
    return rows


def _cached_reader(key: str, label: str, server: Server, path: str, token: str) -> Contender:
    """A contender driven with the cached read of `path` (the same path every request)."""

    def drive(seconds: float) -> wrk.Result:
        return wrk.run(server.url, "get_cached", [path, token], seconds)

    return Contender(key, label, server, drive)


def cached_rows(stack: Stack, opts: Options, user_id: int, token: str) -> list[Row]:
    user = f"/users/{user_id}"
    contenders = [
        _cached_reader(TURNSTILE, TURNSTILE, stack.turnstile, "/api/v1" + user, token),
        _cached_reader("baseline", "baseline: JWT verify + Redis GET", stack.baseline, "/api/v1" + user, token),
        _cached_reader("redis", "reference: Redis GET, no auth", stack.baseline, "/reference/redis" + user, token),
        _cached_reader("ceiling", "ceiling: process dict, no auth", stack.baseline, "/reference/dict" + user, token),
    ]
    return compared("cached GET", contenders, alternating(contenders, opts, "cached"))


def tracing_rows(stack: Stack, opts: Options, user_id: int, token: str) -> list[Row]:
    """The cached read (where tracing weighs most) with tracing off, as every other scenario
    runs, against the same Turnstile with `OTEL_EXPORTER_OTLP_ENDPOINT` set: once sampling no
    request, once sampling every one (spans exported to a stand-in collector). Off installs
    nothing (app/tracing.py), so the off row is also the cost of a build without tracing."""
    sink = stack.start_otlp_sink()
    variants = {"none sampled": "always_off", "all sampled": "always_on"}
    servers = {key: stack.start_variant(f"turnstile-tracing-{sampler}", {
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "OTEL_TRACES_SAMPLER": sampler,
    }) for key, sampler in variants.items()}
    path = f"/api/v1/users/{user_id}"
    labels = {"none sampled": "tracing on, no request sampled",
              "all sampled": "tracing on, every request sampled and exported"}
    try:
        contenders = [
            _cached_reader(TURNSTILE, TURNSTILE, stack.turnstile, path, token),
            *(_cached_reader(key, labels[key], server, path, token) for key, server in servers.items()),
        ]
        return compared(TRACING, contenders, alternating(contenders, opts))
    finally:
        for server in (*servers.values(), sink):
            server.stop()


def uncached_rows(stack: Stack, opts: Options, ids: FreshIds, token: str) -> list[Row]:
    def contender(key: str, label: str, server: Server) -> Contender:
        def drive(seconds: float) -> wrk.Result:
            return ids.used(wrk.run(server.url, "get_uncached", [str(ids.take(seconds)), token], seconds))

        return Contender(key, label, server, drive)

    contenders = [
        contender(TURNSTILE, TURNSTILE, stack.turnstile),
        contender("baseline", "baseline: JWT verify + Redis GET miss + data-service GET + Redis SET",
                  stack.baseline),
    ]
    return compared("uncached GET", contenders, alternating(contenders, opts, "uncached"))


def patch_rows(stack: Stack, opts: Options, token: str) -> list[Row]:
    first = str(stack.seeded - PATCH_IDS + 1)

    def contender(key: str, label: str, server: Server) -> Contender:
        def drive(seconds: float) -> wrk.Result:
            return wrk.run(server.url, "patch", [first, str(PATCH_IDS), token], seconds)

        return Contender(key, label, server, drive)

    # The reference does the baseline's work and consumes its own events as Turnstile's default
    # subscriptions consume Turnstile's: the same broker work, hand-written (not the target's
    # baseline: the issue compares with the plain one).
    consuming = stack.start_consuming_baseline()
    try:
        contenders = [
            contender(TURNSTILE, TURNSTILE, stack.turnstile),
            contender("baseline", "baseline: JWT verify + data-service PATCH + Redis DEL + confirmed publish",
                      stack.baseline),
            contender("consuming", "reference: the baseline + its events consumed as Turnstile's are (2 queues)",
                      consuming),
        ]
        return compared("PATCH", contenders, alternating(contenders, opts))
    finally:
        consuming.stop()


def argon2_rows(stack: Stack, opts: Options, token: str) -> list[Row]:
    """create and login: argon2id at production cost, nothing to compare them with. A server
    that bounds hashing may refuse some with 429/503 and Retry-After."""
    url = stack.turnstile.url

    def create(seconds: float) -> wrk.Result:
        prefix = uuid.uuid4().hex[:8]
        return wrk.run(url, "create", [prefix, token], seconds, timeout_s=SLOW_TIMEOUT_S,
                       connections=opts.slow_connections)

    def login(seconds: float) -> wrk.Result:
        return wrk.run(url, "login", [LOGIN_EMAIL, LOGIN_PASSWORD], seconds, timeout_s=SLOW_TIMEOUT_S,
                       connections=opts.slow_connections)

    rows = []
    for name, run in (("create", create), ("login", login)):
        run(min(opts.warmup, 1.0))
        stack.recover(token)
        rows.append(Row(name, TURNSTILE, TURNSTILE, run(opts.slow_duration), note="no baseline",
                        refusals_expected=True))
        stack.recover(token)
    return rows


def storm_rows(stack: Stack, opts: Options, user_id: int, token: str) -> tuple[list[Row], HashWaits]:
    """The cached read alone, then beside a storm of logins (two wrk processes at once, both
    on the load generator's core); logins may be refused with 429/503 and Retry-After. Also
    how long the storm's hashes waited for a thread (Turnstile's histogram, before and after)."""
    url = stack.turnstile.url
    path = f"/api/v1/users/{user_id}"
    # A starved event loop must show as latency, not as wrk giving up on the request.
    alone = wrk.run(url, "get_cached", [path, token], opts.duration, timeout_s=SLOW_TIMEOUT_S)
    stack.turnstile.settle()
    waits_before = hash_waits.scrape(url)
    logins = wrk.start(url, "login", [LOGIN_EMAIL, LOGIN_PASSWORD], opts.duration + 2 * STORM_LEAD_S,
                       timeout_s=SLOW_TIMEOUT_S, connections=opts.slow_connections)
    try:
        time.sleep(STORM_LEAD_S)
        during = wrk.run(url, "get_cached", [path, token], opts.duration, timeout_s=SLOW_TIMEOUT_S)
    except BaseException:
        wrk.abandon(logins)
        raise
    storm = wrk.finish(logins)
    stack.turnstile.settle()  # the hashes still queued when wrk stopped have waited their last
    waits = hash_waits.between(waits_before, hash_waits.scrape(url))
    stack.recover(token)
    return [
        Row("login storm", "alone", "cached GET alone", alone, note="no baseline"),
        Row("login storm", "during", "cached GET beside the logins", during, note="no baseline"),
        Row("login storm", "logins", f"logins ({opts.slow_connections} connections)", storm, note="no baseline",
            refusals_expected=True),
    ], waits
