"""`python -m read_service verify_read_models [--wait SECONDS]`: are the read models the fold of the log?

The log is the replica table `public.events` of the read database, or the `events` table of the database at
EVENT_STORE_DATABASE_URL when that is set (the optional event store). Prints one line per drifting account
and a summary, logs `read_model_drift_found` per account, and exits 1 on drift, 0 when clean. Accounts whose
events are still in flight are reported apart, never as drift; `--wait` first waits (up to SECONDS) until
none is, and exits 2 if some still are.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from cqrs_common import config
from cqrs_common import logging as cqrs_logging
from read_service.projections.event_log.logs import EventStoreLog, ReplicaTableLog
from read_service.projections.verify import AccountDrift, TotalDrift, VerifyReport, read_models_verify

log = cqrs_logging.get_logger(__name__)

DRIFT_EXIT = 1
UNSETTLED_EXIT = 2
POLL_SECONDS = 0.5


class Command(BaseCommand):
    help = "Compare every read model with the fold of its events; exit 1 on drift."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--wait",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="first wait up to SECONDS until no event is in flight (exit 2 if some still are)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        cqrs_logging.configure(config.service_name("verify_read_models"))
        event_store = config.event_store_database_url()
        deadline = time.monotonic() + options["wait"]
        while True:
            report = read_models_verify(event_store_dsn=event_store)
            if not options["wait"] or report.settled or time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)
        self._report(report, source=EventStoreLog.source if event_store else ReplicaTableLog.source)
        if not report.clean:
            sys.exit(DRIFT_EXIT)
        if options["wait"] and not report.settled:
            sys.exit(UNSETTLED_EXIT)

    def _report(self, report: VerifyReport, source: str) -> None:
        for drift in report.drifts:
            log.warning(
                "read_model_drift_found",
                account_id=str(drift.account_id),
                fields=sorted(drift.fields),
                expected={name: str(pair[0]) for name, pair in drift.fields.items()},
                actual={name: str(pair[1]) for name, pair in drift.fields.items()},
                detail=drift.detail or None,
            )
            self.stdout.write(_account_line(drift))
        for total in report.total_drifts:
            log.warning(
                "currency_total_drift_found",
                currency=total.currency,
                expected=_total(total.expected),
                actual=_total(total.actual),
            )
            self.stdout.write(_total_line(total))
        log.info(
            "read_models_verified",
            source=source,
            accounts=report.accounts_checked,
            events=report.events_checked,
            drifted=len(report.drifts),
            totals_drifted=len(report.total_drifts),
            behind_log=len(report.behind_log),
            ahead_of_log=len(report.ahead_of_log),
            not_projected=len(report.not_projected),
            seconds=round(report.seconds, 3),
        )
        verdict = "clean" if report.clean else f"{len(report.drifts)} account(s) drifted"
        if report.total_drifts:
            verdict += f", {len(report.total_drifts)} currency total(s) drifted"
        self.stdout.write(
            f"{verdict}: {report.accounts_checked} account(s), {report.events_checked} event(s) from the "
            f"{source} checked in {report.seconds:.2f} s"
        )
        in_flight = {
            "behind the log (checked up to their applied version)": report.behind_log,
            "ahead of the log (not checked: the log has not got their events yet)": report.ahead_of_log,
            "in the log but not projected yet": report.not_projected,
        }
        for what, accounts in in_flight.items():
            if accounts:
                sample = ", ".join(str(a) for a in accounts[:3]) + (", ..." if len(accounts) > 3 else "")
                self.stdout.write(f"in flight: {len(accounts)} account(s) {what}: {sample}")


def _account_line(drift: AccountDrift) -> str:
    parts = [f"{name} expected {want}, found {got}" for name, (want, got) in drift.fields.items()]
    if drift.detail:
        parts.append(drift.detail)
    return f"DRIFT account {drift.account_id}: " + "; ".join(parts)


def _total(value: tuple | None) -> dict[str, str] | None:
    if value is None:
        return None
    return {"total_balance": str(value[0]), "accounts": str(value[1]), "open_accounts": str(value[2])}


def _total_line(total: TotalDrift) -> str:
    return f"DRIFT currency {total.currency}: expected {_total(total.expected)}, found {_total(total.actual)}"
