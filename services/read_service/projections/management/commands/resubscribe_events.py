"""`python -m read_service resubscribe_events`: subscribe the read database to the event log again, re-copied.

For a replication slot that lost its WAL (`replication_status` says `wal_status = lost`), or any subscription
beyond repair: drops the subscription and its slot, empties the replica table `public.events` and subscribes
again with `copy_data = true`, returning once the copy is in sync.

Needs REPLICATION_ADMIN_DATABASE_URL: a superuser of the read database (the service's role is not one, on
purpose). The publisher is reached as the existing subscription reached it, or through
REPLICATION_PUBLISHER_CONNINFO (a libpq conninfo, as the read database's server sees the write database).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cqrs_common import config
from cqrs_common import logging as cqrs_logging
from read_service.projections.event_log.replication_admin import (
    ResubscribeError,
    replication_status,
    resubscribe_events,
)


class Command(BaseCommand):
    help = "Drop and re-create the read database's subscription to the event log, copying the log again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--subscription", default=None, help="default: <read database>_events")
        parser.add_argument("--publication", default=None, help="default: the existing one, or cqrs_events")
        parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the copy")

    def handle(self, *args: Any, **options: Any) -> None:
        cqrs_logging.configure(config.service_name("resubscribe_events"))
        admin_dsn = config.replication_admin_database_url()
        if not admin_dsn:
            raise CommandError("set REPLICATION_ADMIN_DATABASE_URL (a superuser of the read database)")
        publisher = config.replication_publisher_conninfo()
        where = {"subscription": options["subscription"], "dsn": admin_dsn, "publisher_dsn": publisher}
        before = replication_status(**where)
        self.stdout.write("before: " + json.dumps(before.to_dict(), default=str))
        try:
            result = resubscribe_events(
                admin_dsn=admin_dsn,
                publisher_conninfo=publisher,
                subscription=options["subscription"],
                publication=options["publication"],
                timeout=options["timeout"],
            )
        except ResubscribeError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"resubscribed {result.subscription}: {result.rows} event(s) copied in {result.seconds:.2f} s"
        )
        if result.slot_left_on_publisher:
            self.stdout.write("the old replication slot could not be dropped: drop it on the publisher")
        after = replication_status(**where)
        self.stdout.write("after: " + json.dumps(after.to_dict(), default=str))
