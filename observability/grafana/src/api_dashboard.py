"""The read/write API dashboard: rate, errors and duration per endpoint of both web services."""

from __future__ import annotations

from typing import Any

from dashboard_panels import (
    RATE,
    dashboard,
    link_to,
    pod_variable,
    query_variable,
    row,
    stat,
    steps,
    target,
    threshold,
    timeseries,
)

SELECTED = 'job=~"$job", pod=~"$pod", view=~"$view"'
REQUESTS = "django_http_requests_total_by_view_transport_method_total"
RESPONSES = "django_http_responses_total_by_status_view_method_total"
LATENCY = "django_http_requests_latency_seconds_by_view_method_bucket"
_RESPONSES_BY_STATUS = "django_http_responses_total_by_status_total"
ERROR_RATIO = (
    f'sum by (job) (rate({_RESPONSES_BY_STATUS}{{job=~"$job", pod=~"$pod", status=~"5.."}}{RATE}))'
    f' / sum by (job) (rate({_RESPONSES_BY_STATUS}{{job=~"$job", pod=~"$pod"}}{RATE}))'
)

# 0 instead of "no data" while a service has never answered a 5xx (the 5xx series do not exist yet).
ERROR_RATIO_OR_ZERO = (
    f'({ERROR_RATIO}) or sum by (job) (0 * rate({REQUESTS}{{job=~"$job", pod=~"$pod"}}{RATE}))'
)


def _summary() -> list[dict[str, Any]]:
    return [
        row("Services", "Each web service as a whole: is it up, how busy, how many errors, how fast."),
        stat(
            "Up",
            "Whether Prometheus reaches each selected service's /metrics. A 0 is a service down or hung "
            "(alert ServiceDown).",
            'min by (job) (up{job=~"$job", pod=~"$pod"})',
            "none",
            steps(),
            [
                {
                    "type": "value",
                    "options": {"0": {"text": "down", "color": "red"}, "1": {"text": "up", "color": "green"}},
                }
            ],
            width=6,
            legend="{{job}}",
        ),
        stat(
            "Requests per second",
            "All requests per service, health checks and scrapes included. Compare with the commands/s "
            "on the pipeline dashboard.",
            f'sum by (job) (rate({REQUESTS}{{job=~"$job", pod=~"$pod"}}{RATE}))',
            "reqps",
            steps(),
            width=6,
            legend="{{job}}",
        ),
        stat(
            "5xx ratio",
            "Share of responses that are server errors. 4xx (validation, 404, 409, 412) are the clients' "
            f"business and not counted. Above {threshold('ApiErrorRateHigh'):.0%} fires ApiErrorRateHigh.",
            ERROR_RATIO_OR_ZERO,
            "percentunit",
            steps((threshold("ApiErrorRateHigh"), "red")),
            width=6,
            legend="{{job}}",
        ),
        stat(
            "p99 latency",
            "99th percentile of view time over all endpoints. Read-your-writes waits (min_version) are "
            "included and can be long by design; look at the per-endpoint panels before worrying.",
            f'histogram_quantile(0.99, sum by (job, le) (rate({LATENCY}{{job=~"$job", pod=~"$pod"}}{RATE})))',
            "s",
            steps((1, "orange")),
            width=6,
            legend="{{job}}",
        ),
    ]


def _red() -> list[dict[str, Any]]:
    return [
        row("Per endpoint", "Rate, errors and duration of every view (Django's view name) and method."),
        timeseries(
            "Request rate per endpoint",
            "Requests per second by service, view and method. The write endpoints are the commands; a sudden "
            "drop to 0 with traffic elsewhere points at one view failing before it counts.",
            [
                target(
                    f"sum by (job, view, method) (rate({REQUESTS}{{{SELECTED}}}{RATE}))",
                    "{{job}} {{method}} {{view}}",
                )
            ],
            "reqps",
        ),
        timeseries(
            "Server errors (5xx) per endpoint",
            "5xx responses per second by endpoint. Should be empty; any line is a bug or a lost database "
            "(each 5xx is logged with the request's correlation id).",
            [
                target(
                    "sum by (job, view, method, status) "
                    f'(rate({RESPONSES}{{{SELECTED}, status=~"5.."}}{RATE}))',
                    "{{job}} {{method}} {{view}} {{status}}",
                )
            ],
            "reqps",
            steps((0.001, "red")),
        ),
        timeseries(
            "Client errors (4xx) by status",
            "Rejected commands and missing resources: 400 validation, 401 token, 404 unknown account, 409 "
            "business rule, 412 version conflict, 422 idempotency key reuse, 503 read-your-writes timeout is "
            "a 5xx. A rise in 412 means concurrent writers on the same account.",
            [
                target(
                    f'sum by (job, status) (rate({RESPONSES}{{{SELECTED}, status=~"4.."}}{RATE}))',
                    "{{job}} {{status}}",
                )
            ],
            "reqps",
        ),
        timeseries(
            "5xx ratio per service",
            "Server errors as a share of all responses. The red line is alert ApiErrorRateHigh "
            f"({threshold('ApiErrorRateHigh'):.0%} for 5 minutes).",
            [target(ERROR_RATIO_OR_ZERO, "{{job}}")],
            "percentunit",
            steps((threshold("ApiErrorRateHigh"), "red")),
        ),
        timeseries(
            "Latency p50 per endpoint",
            "Median view time. Commands take a few milliseconds (one transaction); reads less.",
            [
                target(
                    f"histogram_quantile(0.5, sum by (job, view, le) (rate({LATENCY}{{{SELECTED}}}{RATE})))",
                    "{{job}} {{view}}",
                )
            ],
            "s",
        ),
        timeseries(
            "Latency p99 per endpoint",
            "Tail view time. Reads with min_version wait for the projection (up to wait_ms); a command's "
            "tail rises with row-lock contention on a hot account.",
            [
                target(
                    f"histogram_quantile(0.99, sum by (job, view, le) (rate({LATENCY}{{{SELECTED}}}{RATE})))",
                    "{{job}} {{view}}",
                )
            ],
            "s",
        ),
    ]


def _database() -> list[dict[str, Any]]:
    return [
        row("Database", "Each service's own PostgreSQL database, as seen by Django (django-prometheus)."),
        timeseries(
            "Queries per second",
            "SQL statements executed per service. Per request this should stay flat; a rise per request "
            "is an N+1 query.",
            [
                target(
                    f'sum by (job) (rate(django_db_execute_total{{job=~"$job", pod=~"$pod"}}{RATE}))',
                    "{{job}}",
                )
            ],
            "ops",
            width=8,
        ),
        timeseries(
            "Query duration p99",
            "Tail of SQL statement time. Command transactions hold row locks, so a slow statement here slows "
            "every writer of the same account.",
            [
                target(
                    "histogram_quantile(0.99, sum by (job, le) "
                    f'(rate(django_db_query_duration_seconds_bucket{{job=~"$job", pod=~"$pod"}}{RATE})))',
                    "{{job}}",
                )
            ],
            "s",
            width=8,
        ),
        timeseries(
            "New connections and errors",
            "Connections are persistent (CONN_MAX_AGE), so new connections stay near 0 after start; a steady "
            "rate means connections are dropped. Errors are failed statements.",
            [
                target(
                    f'sum by (job) (rate(django_db_new_connections_total{{job=~"$job", pod=~"$pod"}}{RATE}))',
                    "new {{job}}",
                ),
                target(
                    f'sum by (job) (rate(django_db_errors_total{{job=~"$job", pod=~"$pod"}}{RATE}))',
                    "errors {{job}}",
                    ref="B",
                ),
            ],
            "ops",
            width=8,
        ),
    ]


def _read_waits() -> list[dict[str, Any]]:
    return [
        row(
            "Read-your-writes waits",
            "Reads with min_version held until the read model reaches it (read-service; CONTRACT.md).",
        ),
        timeseries(
            "Waits held",
            "Reads waiting for the projection to reach their min_version, summed over workers. Each holds a "
            "thread; at READ_WAIT_MAX_CONCURRENT per worker further waits are refused. A rise with the "
            "pipeline's lag is expected; a rise without it points at clients asking for versions never "
            "written.",
            [
                target(
                    'sum by (job) (cqrs_read_waits_in_flight{job=~"$job", pod=~"$pod"})',
                    "{{job}}",
                )
            ],
            "short",
            width=12,
        ),
        timeseries(
            "Waits refused",
            "Waits answered 503 at once because the worker already held its maximum: clients should retry "
            "with backoff. Sustained refusals mean too few workers or replicas for the waits asked.",
            [
                target(
                    f'sum by (job) (rate(cqrs_read_waits_refused_total{{job=~"$job", pod=~"$pod"}}{RATE}))',
                    "{{job}}",
                )
            ],
            "reqps",
            width=12,
        ),
    ]


def api() -> dict[str, Any]:
    return dashboard(
        "cqrs-api",
        "CQRS read/write API",
        "RED (rate, errors, duration) of write-service and read-service per endpoint (django-prometheus).",
        [
            query_variable("job", "Service", f"label_values({REQUESTS}, job)"),
            # Before `view`, whose values it narrows.
            pod_variable('label_values(up{job=~"$job"}, pod)'),
            query_variable("view", "Endpoint", f'label_values({REQUESTS}{{job=~"$job", pod=~"$pod"}}, view)'),
        ],
        [*_summary(), *_red(), *_read_waits(), *_database()],
        [link_to("cqrs-pipeline", "CQRS pipeline")],
    )
