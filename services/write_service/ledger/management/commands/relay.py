"""`python -m write_service relay`: the outbox relay (write_service.outbox).

Stops cleanly on SIGTERM or SIGINT: the batch in hand is confirmed and marked, then the connections close
(which releases the leadership to a standby at once).
"""

from __future__ import annotations

import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from cqrs_common import config, metrics
from cqrs_common import logging as cqrs_logging
from write_service.outbox.relay import Relay, RelaySettings, Stopper

DEFAULT_METRICS_PORT = 9101


class Command(BaseCommand):
    help = "Publishes committed events from the outbox to RabbitMQ; one relay leads, others stand by."

    def handle(self, *args: Any, **options: Any) -> None:
        name = config.service_name("relay")
        cqrs_logging.configure(name)
        stopper = Stopper()
        signal.signal(signal.SIGTERM, stopper.request)
        signal.signal(signal.SIGINT, stopper.request)
        metrics.serve_metrics(config.int_setting("RELAY_METRICS_PORT", DEFAULT_METRICS_PORT))
        relay_settings = RelaySettings(
            database=settings.DATABASES["default"],
            broker_url=settings.RABBITMQ_URL,
            name=name,
            batch_size=config.int_setting("RELAY_BATCH_SIZE", 1000),
            poll_interval=config.float_setting("RELAY_POLL_INTERVAL_SECONDS", 1.0),
            max_backoff=config.float_setting("RELAY_MAX_BACKOFF_SECONDS", 5.0),
        )
        Relay(relay_settings, stopper).run()
