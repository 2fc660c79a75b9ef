"""`python -m read_service rebuild_read_models`: rebuild every read model from the event log and swap it in.

Reads the event log (the event store's `events` table when EVENT_STORE_DATABASE_URL is set, else the replica
table `public.events`), applies it with the projector's own apply step into shadow tables,
then swaps them in one transaction while queries keep being served and the projector keeps running (it
waits only for the swap itself). Exits 1 without touching the live models if it cannot swap safely.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from cqrs_common import config
from cqrs_common import logging as cqrs_logging
from read_service.projections.event_log.rows import REPLICA_TABLE
from read_service.projections.rebuild import RebuildRefused, read_models_rebuild


class Command(BaseCommand):
    help = "Rebuild the read models from the event log into shadow tables and swap them in."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500, help="events per build transaction")
        parser.add_argument(
            "--lock-timeout", type=float, default=60.0, help="seconds to keep trying to take the swap's locks"
        )
        parser.add_argument(
            "--log-wait",
            type=float,
            default=30.0,
            help="seconds to wait for the log to receive events the projector has applied already",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        cqrs_logging.configure(config.service_name("rebuild_read_models"))
        # One line per applied batch is the projector's business; here it would only bury the summary.
        logging.getLogger("read_service.projections.apply").setLevel(logging.WARNING)
        event_store = config.event_store_database_url()
        if event_store is None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [REPLICA_TABLE])
                if not cursor.fetchone()[0]:
                    raise CommandError(
                        f"no {REPLICA_TABLE}: set up replication (deploy/local/replication.sh)"
                    )
        try:
            report = read_models_rebuild(
                batch_size=options["batch_size"],
                lock_timeout=options["lock_timeout"],
                log_wait=options["log_wait"],
                event_store_dsn=event_store,
            )
        except RebuildRefused as exc:
            raise CommandError(f"rebuild refused, live read models unchanged: {exc}") from exc
        except LookupError as exc:
            raise CommandError(str(exc)) from exc
        source = "the event store" if event_store else f"the replica table {REPLICA_TABLE}"
        self.stdout.write(
            f"rebuilt {report.accounts} account(s) from {report.events_applied} event(s) of {source} in "
            f"{report.build_seconds + report.swap_seconds:.2f} s (build {report.build_seconds:.2f} s, swap "
            f"{report.swap_seconds:.2f} s, projector paused {report.projector_paused_seconds * 1000:.0f} ms)"
        )
        if report.drained:
            self.stdout.write(f"{report.drained} parked event(s) made next by the rebuild applied after it")
        if report.failed or report.unreadable or report.parked:
            self.stdout.write(
                f"as the projector would: {len(report.failed)} event(s) failed in their handler, "
                f"{len(report.unreadable)} unreadable, {report.parked} still waiting for a predecessor"
            )
