"""`python -m write_service relay`: the outbox relay (write_service.outbox).

Stops cleanly on SIGTERM or SIGINT: the batch in hand is confirmed and marked, then the connections close
(which releases the leadership to a standby at once). Metrics are served on RELAY_METRICS_PORT (default 9101;
0 serves none), with /readyz and /healthz from the loop's heartbeat (CONTRACT.md).
"""

from __future__ import annotations

import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from cqrs_common import config, metrics
from cqrs_common import logging as cqrs_logging
from cqrs_common.heartbeat import HealthBounds, WorkerHealth
from write_service.outbox.relay import Relay, RelaySettings, Stopper


class Command(BaseCommand):
    help = "Publishes committed events from the outbox to RabbitMQ; one relay leads, others stand by."

    def handle(self, *args: Any, **options: Any) -> None:
        name = config.service_name("relay")
        cqrs_logging.configure(name)
        stopper = Stopper()
        signal.signal(signal.SIGTERM, stopper.request)
        signal.signal(signal.SIGINT, stopper.request)
        relay_settings = RelaySettings(
            database=settings.DATABASES["default"],
            broker_url=settings.RABBITMQ_URL,
            name=name,
            batch_size=config.relay_batch_size(),
            poll_interval=config.relay_poll_interval(),
            max_backoff=config.relay_max_backoff(),
            leadership_timeout=config.relay_leadership_timeout(),
            database_timeout=config.relay_database_timeout(),
            statement_timeout=config.worker_statement_timeout_seconds(),
            lock_timeout=config.worker_lock_timeout_seconds(),
        )
        relay = Relay(relay_settings, stopper)
        metrics_port = config.relay_metrics_port()
        if metrics_port:
            bounds = HealthBounds(config.worker_readiness_seconds(), config.worker_liveness_seconds())
            metrics.serve_metrics(metrics_port, process="relay", health=WorkerHealth(bounds, relay.heartbeat))
        relay.run()
