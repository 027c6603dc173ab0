"""Turnstile's Grafana dashboard as code: writes the chart's files/grafana-dashboard.json.

    python deploy/dashboard.py            # regenerate the JSON the chart ships
    python deploy/dashboard.py --check    # exit 1 when the committed JSON is not what this writes

Built with grafana-foundation-sdk (the dev extra). Every query filters on the namespace and job
Prometheus gives the scraped pods (the ServiceMonitor's job is the release's Service), so one
dashboard serves every release; docs/operations.md says what each panel answers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    MappingType,
    ValueMap,
    ValueMappingResult,
    VariableRefresh,
)

OUTPUT = Path(__file__).resolve().parent / "helm" / "turnstile" / "files" / "grafana-dashboard.json"
UID = "turnstile-overview"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# Every selector carries these; Prometheus adds both labels to what it scrapes.
TARGET = 'namespace="$namespace", job="$job"'
RATE = "[$__rate_interval]"
API_ONLY = 'pipeline!~"healthz|readyz|metrics"'  # probes and scrapes are not traffic
SERVER_ERRORS = 'status=~"5.."'
HIT = 'result="hit"'
LOGIN = 'pipeline="login"'


def sel(metric: str, matchers: str = "") -> str:
    """A series selector for this dashboard's namespace and job, plus `matchers`."""
    return f"{metric}{{{TARGET}{', ' + matchers if matchers else ''}}}"


def rate(metric: str, matchers: str = "") -> str:
    """The per-second rate of a counter over Grafana's rate interval."""
    return f"rate({sel(metric, matchers)}{RATE})"


def query(expr: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)


def graph(title: str, description: str, unit: str, *queries: prometheus.Dataquery) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
    return panel.targets(list(queries)).height(8).span(12).fill_opacity(10)


def quantiles(metric: str, by: str, legend: str) -> list[prometheus.Dataquery]:
    """p50 and p99 of a histogram, per `by` labels."""
    return [
        query(
            f"histogram_quantile({q}, sum by ({by}, le) ({rate(metric + '_bucket')}))",
            f"p{int(q * 100)} {legend}",
            ref,
        )
        for q, ref in ((0.5, "A"), (0.99, "B"))
    ]


def requests_row() -> list[timeseries.Panel]:
    return [
        graph(
            "Requests by pipeline", "Requests answered per second, per pipeline and status class.", "reqps",
            query(f"sum by (pipeline) ({rate('turnstile_requests_total', API_ONLY)})", "{{pipeline}}"),
            query(
                f"sum by (pipeline, status) ({rate('turnstile_requests_total', f'{API_ONLY}, {SERVER_ERRORS}')})",
                "{{pipeline}} {{status}}", "B",
            ),
        ),
        graph(
            "Latency by pipeline", "p50 and p99 time to answer, per pipeline.", "s",
            *quantiles("turnstile_request_seconds", "pipeline", "{{pipeline}}"),
        ),
        graph(
            "Latency by step", "p99 time in each step of each pipeline, the steps inside it included.", "s",
            query(
                f"histogram_quantile(0.99, sum by (pipeline, step, le) ({rate('turnstile_step_seconds_bucket')}))",
                "{{pipeline}} / {{step}}",
            ),
        ),
    ]


def cache_row() -> list[timeseries.Panel]:
    return [
        graph(
            "Cache results", "Cached reads per second: hit, miss, or bypass (Redis not answering).", "reqps",
            query(
                f"sum by (pipeline, result) ({rate('turnstile_cache_requests_total')})",
                "{{pipeline}} {{result}}",
            ),
        ),
        graph(
            "Cache hit ratio", "Share of cached reads answered from Redis.", "percentunit",
            query(
                f"sum by (pipeline) ({rate('turnstile_cache_requests_total', HIT)})"
                f" / sum by (pipeline) ({rate('turnstile_cache_requests_total')})",
                "{{pipeline}}",
            ),
        ),
    ]


def circuit_state() -> stat.Panel:
    names = {"0": ("closed", "green"), "1": ("half-open", "orange"), "2": ("open", "red")}
    mapping = ValueMap(options={k: ValueMappingResult(text=t, color=c) for k, (t, c) in names.items()})
    mapping.type_val = MappingType.VALUE_TO_TEXT
    panel = stat.Panel().title("Circuit state").datasource(DATASOURCE).height(8).span(6)
    panel = panel.description("The worst breaker state per upstream over the pods: closed, half-open or open.")
    return panel.mappings([mapping]).with_target(
        query(f"max by (upstream) ({sel('turnstile_circuit_state')})", "{{upstream}}")
    )


def data_service_row() -> list[timeseries.Panel | stat.Panel]:
    return [
        graph(
            "Data-service calls", "Calls per second by final outcome (ok, not_found, timeout, circuit_open, ...).",
            "reqps",
            query(f"sum by (outcome) ({rate('turnstile_data_service_calls_total')})", "{{outcome}}"),
            query(f"sum({rate('turnstile_data_service_retries_total')})", "retries", "B"),
        ),
        graph(
            "Data-service latency", "p50 and p99 of a call, retries and backoff included.", "s",
            *quantiles("turnstile_data_service_call_seconds", "upstream", "{{upstream}}"),
        ).span(6),
        circuit_state(),
    ]


def events_row() -> list[timeseries.Panel]:
    return [
        graph(
            "Events published", "Events per second by outcome: confirmed by RabbitMQ, outboxed, unroutable, nacked.",
            "ops",
            query(f"sum by (outcome) ({rate('turnstile_events_published_total')})", "{{outcome}}"),
        ),
        graph(
            "Outbox depth", "Events waiting for the broker (one list shared by the pods: the maximum, not the sum),"
            " and pods whose publisher has a broker channel.", "short",
            query(f"max({sel('turnstile_outbox_depth')})", "waiting"),
            query(f"sum({sel('turnstile_publisher_connected')})", "pods connected", "B"),
        ),
    ]


def logins_row() -> list[timeseries.Panel]:
    return [
        graph(
            "Logins", "Login answers per second by status: 200, 401 (bad credentials), 429 (rate limited), 503.",
            "reqps",
            query(f"sum by (status) ({rate('turnstile_requests_total', LOGIN)})", "{{status}}"),
        ),
        graph(
            "Rate limits", "Requests refused with 429, and requests let through unchecked because Redis was down,"
            " per limiter.", "reqps",
            query(f"sum by (limiter) ({rate('turnstile_rate_limit_rejected_total')})", "429 {{limiter}}"),
            query(f"sum by (limiter) ({rate('turnstile_rate_limit_fail_open_total')})", "fail-open {{limiter}}", "B"),
        ),
        graph(
            "Password hashing", "Hashes running or queued (all pods), hashes refused with 503 per second (the"
            " queue was full or a hash waited past the 2 s bound), and the p99 wait for a hashing thread.",
            "short",
            query(f"sum({sel('turnstile_password_hashes_in_flight')})", "in flight"),
            query(f"sum({rate('turnstile_password_hashes_refused_total')})", "refused /s", "B"),
            query(
                f"histogram_quantile(0.99, sum by (le) ({rate('turnstile_password_hash_wait_seconds_bucket')}))",
                "p99 wait (s)", "C",
            ),
        ),
    ]


LAG_BOUND = 'le="0.5"'


def process_row() -> list[timeseries.Panel]:
    return [
        graph(
            "Event-loop lag", "How late the pods' event loops ran a timer due now (p99), and how many such timers"
            " per second ran over 0.5 s late: time some code held a loop without awaiting, every request of its"
            " pod waiting. Near zero when healthy; the pod's log names the code behind each stall"
            " (TURNSTILE_LOOP_BLOCKED_S).", "s",
            query(
                f"histogram_quantile(0.99, sum by (le) ({rate('turnstile_event_loop_lag_seconds_bucket')}))",
                "p99 lag (s)",
            ),
            query(
                f"sum({rate('turnstile_event_loop_lag_seconds_count')})"
                f" - sum({rate('turnstile_event_loop_lag_seconds_bucket', LAG_BOUND)})",
                "late over 0.5 s /s", "B",
            ),
        ),
    ]


def variables() -> list[dashboard.DatasourceVariable | dashboard.QueryVariable]:
    source = dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
    namespace = (
        dashboard.QueryVariable("namespace").label("Namespace").datasource(DATASOURCE)
        .query("label_values(turnstile_requests_total, namespace)").refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
    )
    job = (
        dashboard.QueryVariable("job").label("Release").datasource(DATASOURCE)
        .query('label_values(turnstile_requests_total{namespace="$namespace"}, job)')
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
    )
    return [source, namespace, job]


def build() -> dashboard.Dashboard:
    board = (
        dashboard.Dashboard("Turnstile").uid(UID).tags(["turnstile"]).refresh("30s").time("now-3h", "now")
        .description("Requests, cache, data service, events and logins of one Turnstile release.")
    )
    for variable in variables():
        board = board.with_variable(variable)
    rows: list[tuple[str, list[timeseries.Panel] | list[timeseries.Panel | stat.Panel]]] = [
        ("Requests", requests_row()),
        ("Cache", cache_row()),
        ("Data service", data_service_row()),
        ("Events", events_row()),
        ("Logins and rate limits", logins_row()),
        ("Process", process_row()),
    ]
    for title, panels in rows:
        board = board.with_row(dashboard.Row(title))
        for panel in panels:
            board = board.with_panel(panel)
    return board


def render() -> str:
    """The dashboard JSON, stable byte for byte (sorted keys, two-space indent)."""
    built = build().build()
    return json.dumps(json.loads(json.dumps(built, cls=JSONEncoder)), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if OUTPUT.read_text() != text:
            sys.stderr.write(f"{OUTPUT} is out of date: run python deploy/dashboard.py\n")
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
