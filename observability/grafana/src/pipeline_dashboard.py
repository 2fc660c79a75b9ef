"""The CQRS pipeline dashboard: commands in, events through outbox, RabbitMQ and projector, lag out."""

from __future__ import annotations

from typing import Any

from dashboard_panels import (
    MIB,
    POD,
    RATE,
    dashboard,
    link_to,
    pod_variable,
    quantiles,
    query_variable,
    row,
    stat,
    steps,
    target,
    threshold,
    timeseries,
    value_text,
)

_DEAD_LETTERED = f"cqrs_events_dead_lettered_total{{{POD}}}"
# Dead letters per window. A reason's series is born at its first dead letter with 1 as its first sample,
# which increase() cannot see, so a series younger than the window counts with its value (as the
# EventsDeadLettered alert does), and every other window shows 0.
DEAD_LETTERED_IN_WINDOW = (
    f"(increase({_DEAD_LETTERED}{RATE}) > 0)"
    f" or ({_DEAD_LETTERED} unless {_DEAD_LETTERED} offset $__rate_interval)"
    f" or (0 * {_DEAD_LETTERED})"
)
QUEUES = 'vhost=~"$vhost", queue=~"read-service\\\\.projector.*"'


def _summary() -> list[dict[str, Any]]:
    return [
        row("Now", "The state of the pipeline at a glance; each colour follows the alert of the same name."),
        stat(
            "Projection path",
            "Which path feeds the read DB. `broker` is normal; `replication` means RabbitMQ is unreachable "
            "for the projector and it follows the replicated events table (alert ProjectionOnFallbackPath).",
            f'max(cqrs_projection_mode{{path="replication", {POD}}})',
            "none",
            steps((threshold("ProjectionOnFallbackPath"), "orange")),
            value_text({"0": ("broker", "green"), "1": ("replication (fallback)", "orange")}),
        ),
        stat(
            "Outbox backlog",
            "Events committed but not yet confirmed by RabbitMQ. A few during bursts is normal; above "
            f"{threshold('OutboxBacklogGrowing'):.0f} and rising fires OutboxBacklogGrowing.",
            f"sum(cqrs_outbox_backlog{{{POD}}})",
            "short",
            steps((threshold("OutboxBacklogGrowing"), "orange")),
        ),
        stat(
            "Oldest unpublished event",
            "How long the oldest outbox event has waited for RabbitMQ. Stays near 0; over "
            f"{threshold('OutboxEventTooOld'):.0f} s fires OutboxEventTooOld (publishing is stuck).",
            f"max(cqrs_outbox_oldest_age_seconds{{{POD}}})",
            "s",
            steps((threshold("OutboxEventTooOld"), "red")),
        ),
        stat(
            "End-to-end lag p99",
            "99th percentile of commit-to-read-DB time over the window. The SLO is "
            f"{threshold('EndToEndLagHigh'):g} s (alert EndToEndLagHigh); the steady state is milliseconds.",
            quantiles("cqrs_end_to_end_lag_seconds", qs=(0.99,), selector=POD)[0]["expr"],
            "s",
            steps((threshold("EndToEndLagHigh"), "red")),
        ),
        stat(
            "Dead-letter queue",
            "Messages in read-service.projector.dlq: events the projector could not parse or does not know. "
            "Anything above 0 needs a person (alert DeadLetterQueueNotEmpty).",
            'sum(rabbitmq_detailed_queue_messages{vhost=~"$vhost", queue=~".+\\\\.dlq"}) or vector(0)',
            "short",
            steps((threshold("DeadLetterQueueNotEmpty"), "red")),
        ),
        stat(
            "Projector",
            "Whether Prometheus reaches the projector's metrics. Down means no event reaches the read DB; "
            "they wait safely in RabbitMQ (alert ProjectorDown).",
            f'min(up{{job="projector", {POD}}})',
            "none",
            steps(),
            value_text({"0": ("down", "red"), "1": ("up", "green")}),
        ),
    ]


def _throughput() -> list[dict[str, Any]]:
    return [
        row("Throughput", "Commands accepted, events published by the relay and applied by the projector."),
        timeseries(
            "Commands per second",
            "Write requests accepted by write-service, per endpoint (POST only). Each accepted command "
            "commits one or two events, so published and applied rates should follow this curve.",
            [
                target(
                    "sum by (view) (rate(django_http_requests_total_by_view_transport_method_total"
                    f'{{job="write-service", method="POST", {POD}}}{RATE}))',
                    "{{view}}",
                )
            ],
            "reqps",
            width=8,
        ),
        timeseries(
            "Events published per second",
            "Events confirmed by RabbitMQ, by type. A flat line while commands arrive means the relay is "
            "stuck: check the outbox backlog.",
            [
                target(
                    f'sum by (type) (rate(cqrs_events_published_total{{type=~"$type", {POD}}}{RATE}))',
                    "{{type}}",
                )
            ],
            "ops",
            width=8,
            stacked=True,
        ),
        timeseries(
            "Events applied per second",
            "Events applied to the read DB, by path (broker or replication), duplicates ignored and events "
            "parked. Applied should match published; duplicates appear after redeliveries and path switches; "
            "parked stays at 0 while each partition has one projector (ADR 0008): it is the safety net.",
            [
                target(
                    f'sum by (path) (rate(cqrs_events_applied_total{{type=~"$type", {POD}}}{RATE}))',
                    "applied {{path}}",
                ),
                target(
                    f"sum by (path) (rate(cqrs_events_duplicate_total{{{POD}}}{RATE}))",
                    "duplicate {{path}}",
                    ref="B",
                ),
                target(
                    f"sum by (path) (rate(cqrs_events_parked_total{{{POD}}}{RATE}))",
                    "parked {{path}}",
                    ref="C",
                ),
            ],
            "ops",
            width=8,
        ),
    ]


def _lag() -> list[dict[str, Any]]:
    return [
        row(
            "Backlog and lag",
            "Where time is spent between a command's commit and its effect on the read side.",
        ),
        timeseries(
            "Outbox backlog",
            "Events waiting for a publisher confirm. It should drain to 0 between bursts; a line that only "
            f"climbs past {threshold('OutboxBacklogGrowing'):.0f} fires OutboxBacklogGrowing.",
            [target(f"sum(cqrs_outbox_backlog{{{POD}}})", "backlog")],
            "short",
            steps((threshold("OutboxBacklogGrowing"), "orange")),
        ),
        timeseries(
            "Oldest unpublished event age",
            "Age of the oldest event not yet confirmed. A sawtooth near 0 is healthy; a straight rising "
            "line means nothing gets published (alert OutboxEventTooOld at "
            f"{threshold('OutboxEventTooOld'):.0f} s).",
            [target(f"max(cqrs_outbox_oldest_age_seconds{{{POD}}})", "oldest")],
            "s",
            steps((threshold("OutboxEventTooOld"), "red")),
        ),
        timeseries(
            "Publish lag (commit to confirm)",
            "Relay: time from the event's commit to RabbitMQ's publisher confirm. Rises when RabbitMQ is "
            "slow or the relay is behind; compare with consume lag to place a delay.",
            quantiles("cqrs_publish_lag_seconds", selector=POD),
            "s",
            width=8,
        ),
        timeseries(
            "Consume lag (publish to applied)",
            "Projector: time from the message's publish timestamp to the read-DB commit. Rises when the "
            "projector or the read DB is slow, or messages queue up in RabbitMQ.",
            quantiles("cqrs_consume_lag_seconds", selector=POD),
            "s",
            width=8,
        ),
        timeseries(
            "End-to-end lag (commit to applied)",
            "What a reader waits for: commit on the write side to applied on the read side. The red line is "
            f"the {threshold('EndToEndLagHigh'):g} s SLO of alert EndToEndLagHigh (on p99).",
            quantiles("cqrs_end_to_end_lag_seconds", selector=POD),
            "s",
            steps((threshold("EndToEndLagHigh"), "red")),
            width=8,
        ),
        timeseries(
            "Reporting subscriber lag",
            "The second subscriber (daily totals): commit to counted of its last batch, 0 while it has "
            "nothing to count. High during a catch-up from the log, then near the projector's lag once live; "
            f"above {threshold('ReportingLagHigh'):.0f} s for 10 minutes fires ReportingLagHigh.",
            [target(f"max(cqrs_reporting_lag_seconds{{{POD}}})", "lag")],
            "s",
            steps((threshold("ReportingLagHigh"), "orange")),
        ),
        timeseries(
            "Reporting subscriber: counted, skipped, waiting",
            "Events counted per second from history (the log) and live (its queue), deliveries skipped as "
            "already counted (the switch from the log to the queue), events waiting for it, and its phase "
            "(1 = catching up from the log).",
            [
                target(
                    f"sum by (path) (rate(cqrs_reporting_events_counted_total{{{POD}}}{RATE}))",
                    "counted: {{path}}",
                ),
                target(
                    f"sum(rate(cqrs_reporting_events_duplicate_total{{{POD}}}{RATE}))", "skipped", ref="B"
                ),
                target(f"max(cqrs_reporting_lag_events{{{POD}}})", "waiting", ref="C"),
                target(f'max(cqrs_reporting_phase{{phase="catching_up", {POD}}})', "catching up", ref="D"),
            ],
            "short",
        ),
    ]


def _fallback() -> list[dict[str, Any]]:
    return [
        row(
            "Fallback and dead letters", "The replication fallback path, its WAL cost, and refused messages."
        ),
        timeseries(
            "Projection path over time",
            "1 for the path feeding the read DB. A switch to replication marks a RabbitMQ outage seen by the "
            "projector; it should switch back once RabbitMQ returns (alert ProjectionOnFallbackPath).",
            [target(f"max by (path) (cqrs_projection_mode{{{POD}}})", "{{path}}")],
            "none",
            steps((threshold("ProjectionOnFallbackPath"), "orange")),
            width=8,
            stepped=True,
        ),
        timeseries(
            "Replication slot retained WAL",
            "WAL the write DB keeps for the read side's subscription. It grows when the subscription stops "
            "consuming; PostgreSQL drops the slot at 1 GiB (alerts ReplicationSlotRetainingWal at "
            f"{threshold('ReplicationSlotRetainingWal') / MIB:.0f} MiB, ReplicationSlotNearLimit at "
            f"{threshold('ReplicationSlotNearLimit') / MIB:.0f} MiB).",
            [target(f"max by (slot) (cqrs_replication_slot_retained_bytes{{{POD}}})", "{{slot}}")],
            "bytes",
            steps(
                (threshold("ReplicationSlotRetainingWal"), "orange"),
                (threshold("ReplicationSlotNearLimit"), "red"),
            ),
            width=8,
        ),
        timeseries(
            "Dead-lettered messages",
            "Messages the projector refused, by reason (counted by the projector), and the dead-letter "
            "queue's depth (from RabbitMQ). Any point above 0 fires EventsDeadLettered or "
            "DeadLetterQueueNotEmpty.",
            [
                target(f"sum by (reason) ({DEAD_LETTERED_IN_WINDOW})", "refused: {{reason}}"),
                target(
                    'sum by (queue) (rabbitmq_detailed_queue_messages{vhost=~"$vhost", queue=~".+\\\\.dlq"})',
                    "in {{queue}}",
                    ref="B",
                ),
            ],
            "short",
            steps((threshold("DeadLetterQueueNotEmpty"), "red")),
            width=8,
        ),
    ]


def _infrastructure() -> list[dict[str, Any]]:
    return [
        row(
            "Infrastructure",
            "RabbitMQ from its rabbitmq_prometheus plugin; PostgreSQL through the replication slot above (no "
            "PostgreSQL exporter is deployed).",
        ),
        timeseries(
            "Projector queue depth",
            "Messages ready and unacknowledged in the projector's queues. Ready messages piling up mean the "
            "projector is slower than the relay or not consuming; unacked stays at most its prefetch.",
            [
                target(
                    f"sum by (queue) (rabbitmq_detailed_queue_messages_ready{{{QUEUES}}})", "ready {{queue}}"
                ),
                target(
                    f"sum by (queue) (rabbitmq_detailed_queue_messages_unacked{{{QUEUES}}})",
                    "unacked {{queue}}",
                    ref="B",
                ),
            ],
            "short",
            width=8,
        ),
        timeseries(
            "RabbitMQ message rates",
            "Node-wide: messages received from publishers, confirmed to them, delivered to consumers and "
            "acknowledged. Received and acknowledged should track each other.",
            [
                target(f"sum(rate(rabbitmq_global_messages_received_total{RATE}))", "received"),
                target(f"sum(rate(rabbitmq_global_messages_confirmed_total{RATE}))", "confirmed", ref="B"),
                target(f"sum(rate(rabbitmq_global_messages_delivered_total{RATE}))", "delivered", ref="C"),
                target(
                    f"sum(rate(rabbitmq_global_messages_acknowledged_total{RATE}))", "acknowledged", ref="D"
                ),
            ],
            "ops",
            width=8,
        ),
        timeseries(
            "Consumers on the projector queue",
            "Consumers attached to each partition queue read-service.projector.p0 .. p{N-1}: every projector "
            "subscribes to every partition, one of them active. 0 while the projectors run means they lost "
            "their channels (they should be on the replication path then).",
            [
                target(
                    'sum by (queue) (rabbitmq_detailed_queue_consumers{vhost=~"$vhost", '
                    'queue=~"read-service\\\\.projector\\\\.p[0-9]+"})',
                    "{{queue}}",
                )
            ],
            "short",
            width=8,
        ),
        timeseries(
            "RabbitMQ connections and channels",
            "Open AMQP connections and channels on the node. The relay and the projector each hold one "
            "connection; a climbing count means a client leaks or reconnects in a loop.",
            [
                target("sum(rabbitmq_connections)", "connections"),
                target("sum(rabbitmq_channels)", "channels", ref="B"),
            ],
            "short",
            width=8,
        ),
        timeseries(
            "RabbitMQ resource alarms",
            "1 while a memory, disk or file-descriptor alarm is raised: RabbitMQ then blocks publishers, so "
            "the outbox backlog grows. 'relay blocked' is the relay's own view (connection.blocked): 1 while "
            "its publishing is held back; 2 minutes of it fire RelayBlockedByBroker.",
            [
                target("max(rabbitmq_alarms_memory_used_watermark)", "memory"),
                target("max(rabbitmq_alarms_free_disk_space_watermark)", "disk", ref="B"),
                target("max(rabbitmq_alarms_file_descriptor_limit)", "file descriptors", ref="C"),
                target(f"max(cqrs_broker_blocked{{{POD}}})", "relay blocked", ref="D"),
            ],
            "none",
            steps((1, "red")),
            width=8,
            stepped=True,
        ),
        timeseries(
            "Scrape targets up",
            "1 for every process Prometheus reaches. A 0 is a process down or hung (alerts ServiceDown and "
            "ProjectorDown).",
            [target(f"min by (job, pod) (up{{{POD}}})", "{{job}} {{pod}}")],
            "none",
            width=8,
            stepped=True,
        ),
    ]


def pipeline() -> dict[str, Any]:
    return dashboard(
        "cqrs-pipeline",
        "CQRS pipeline",
        "Commands, the outbox relay, RabbitMQ, the projector and the replication fallback of cqrs-lab.",
        [
            query_variable("type", "Event type", "label_values(cqrs_events_published_total, type)"),
            pod_variable("label_values(up, pod)"),
            query_variable(
                "vhost", "RabbitMQ vhost", "label_values(rabbitmq_detailed_queue_messages, vhost)"
            ),
        ],
        [*_summary(), *_throughput(), *_lag(), *_fallback(), *_infrastructure()],
        [link_to("cqrs-api", "Read/write API")],
    )
