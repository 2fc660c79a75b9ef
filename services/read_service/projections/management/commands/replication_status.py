"""`python -m read_service replication_status`: is the read database's subscription to the event log working?

Prints the status as JSON and exits 1 when something is wrong (disabled, no apply worker, table out of sync,
slot lost). With REPLICATION_PUBLISHER_CONNINFO set it also reads the slot's `wal_status` on the publisher.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from cqrs_common import config
from cqrs_common import logging as cqrs_logging
from read_service.projections.event_log.replication_admin import replication_status


class Command(BaseCommand):
    help = "Show the read database's subscription to the event log; exit 1 when it is not healthy."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--subscription", default=None, help="default: <read database>_events")

    def handle(self, *args: Any, **options: Any) -> None:
        cqrs_logging.configure(config.service_name("replication_status"))
        publisher = config.replication_publisher_conninfo()
        status = replication_status(subscription=options["subscription"], publisher_dsn=publisher)
        self.stdout.write(json.dumps(status.to_dict(), default=str))
        if not status.healthy:
            sys.exit(1)
