"""`python -m read_service reporting`: the reporting subscriber (catch-up from the log, then live).

Its broker user is its own: RABBITMQ_URL names the `reporting` user, which may declare and consume only the
`reporting.*` queues and read `cqrs.events` (deploy/local/infra.sh). Stops cleanly on SIGTERM or SIGINT once
the batch in hand is committed and settled. Metrics, /readyz and /healthz on REPORTING_METRICS_PORT (default
9103; 0 serves none); its database sessions get the workers' statement and lock timeouts.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from cqrs_common import config
from cqrs_common.heartbeat import HealthBounds
from cqrs_common.messaging import Consumer, reporting_queues
from read_service import worker
from read_service.reporting.models import DEFAULT_SUBSCRIPTION
from read_service.reporting.subscriber import ReportingSubscriber, SubscriberSettings


class Command(BaseCommand):
    help = "Count events into the daily totals: history from the log first, then live from its own queue."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--metrics-port", type=int, default=config.reporting_metrics_port())
        parser.add_argument(
            "--subscription",
            default=DEFAULT_SUBSCRIPTION,
            help="its name: the queue is reporting.<name>, its rows carry the name (default daily-totals)",
        )
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args: Any, **options: Any) -> None:
        stop = worker.start(
            config.service_name("reporting"),
            statement_timeout=config.worker_statement_timeout_seconds(),
            lock_timeout=config.worker_lock_timeout_seconds(),
        )
        queues = reporting_queues(options["subscription"])
        batch_size = options["batch_size"]

        def connect() -> Consumer:
            return Consumer(
                settings.RABBITMQ_URL, connection_name="reporting", subscriber=queues, prefetch=2 * batch_size
            )

        subscriber = ReportingSubscriber(
            connect, SubscriberSettings(subscription=options["subscription"], batch_size=batch_size)
        )
        worker.serve_health(options["metrics_port"], "reporting", health_bounds(), subscriber.heartbeat)
        subscriber.run(stop)


def health_bounds() -> HealthBounds:
    return HealthBounds(config.worker_readiness_seconds(), config.worker_liveness_seconds())
