"""Deposits of two schema versions side by side: old rows upcast on read, never rewritten.

`MoneyDeposited` is at schema version 2: it carries the depositor's `reference`. The previous release stored
deposits as version 1, `{"amount"}` alone, and those rows stay in the append-only store (and in its replica)
for good. Every reader upcasts them on read through one chain (cqrs_common/upcasting.py): a version 1 deposit
reads as version 2 with a null reference. This experiment writes version 1 deposits the way the previous
release did (straight into the write database, devkit/previous_release.py) and version 2 ones through the
API, shows both as stored and as the read side shows them, rebuilds the read models from the log and checks
that they equal what the projector built live and that not one stored row changed, then times reading
(parsing, checking and upcasting) a version 1 and a version 2 event.
Note: the rebuild replaces the read models of EVERY account of this read database.
"""

from __future__ import annotations

import argparse
import json
import timeit
from collections.abc import Callable
from typing import Any
from uuid import UUID

from cqrs_common.events import EventEnvelope, from_wire, to_wire
from cqrs_common.upcasting import upcast
from devkit.previous_release import deposit_v1
from lab._support import PIPELINE, Client, Lab, Report

SHOWN = 3  # deposits of each version printed side by side
TIMED = 20_000  # reads per timing
REPEATS = 5

# The rows of the experiment's accounts as stored: the same query on the write database and on the replica.
_STORED = """
SELECT position, event_id::text, aggregate_id::text, aggregate_version, event_type, schema_version,
       data::text, occurred_at, correlation_id
  FROM events WHERE aggregate_id = ANY(%s::uuid[]) ORDER BY position
"""
# The read models of the experiment's accounts.
_READ_MODELS = """
SELECT 'line', account_id::text, version, kind, amount::text, balance_after::text, reference
  FROM statement_lines WHERE account_id = ANY(%(ids)s::uuid[])
UNION ALL
SELECT 'account', account_id::text, version, status, balance::text, owner, currency
  FROM account_view WHERE account_id = ANY(%(ids)s::uuid[])
ORDER BY 1, 2, 3
"""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="schema-evolution", description=__doc__)
    parser.add_argument("--deposits", type=int, default=20, help="deposits of each version (default 20)")
    args = parser.parse_args(argv)
    lab = Lab.running()
    report = Report("schema-evolution", __doc__)
    with lab.client() as client:
        return run(lab, report, client, args.deposits)


def run(lab: Lab, report: Report, client: Client, deposits: int) -> int:
    accounts = [client.open_account(f"lab-schema-{i}")[0] for i in range(2)]
    _deposit_both_ways(lab, client, accounts, deposits)
    report.step(
        f"2 accounts; {deposits} deposits written as the previous release did (version 1, straight into the"
        f"\n    write database) and {deposits} through the API (version 2), interleaved; all projected."
    )

    ids = [str(a) for a in accounts]
    stored = lab.write_rows(_STORED, [ids])
    replica = lab.read_rows(_STORED, [ids])
    deposits_by_version = {v: [r for r in stored if r[4] == "MoneyDeposited" and r[5] == v] for v in (1, 2)}
    lines = {
        (line_account, line["version"]): line
        for line_account in ids
        for line in _statement(client, line_account)
    }
    shown = {v: [lines[(row[2], row[3])] for row in rows] for v, rows in deposits_by_version.items()}
    report.step("Side by side: as stored in `events`, and as GET /api/accounts/{id}/transactions shows it.")
    for version, rows in deposits_by_version.items():
        for row, line in list(zip(rows, shown[version], strict=True))[:SHOWN]:
            report.detail(
                f"v{version}  stored {row[6]:44} -> {line['kind']} {line['amount']:>6}"
                f"  reference {json.dumps(line['reference'])}"
            )

    live = lab.read_rows(_READ_MODELS, {"ids": ids})
    rebuilt = lab.read_service_command("rebuild_read_models", timeout=300)
    report.step(f"rebuild_read_models (exit {rebuilt.returncode}): {_last_line(rebuilt.stdout)}")
    verified = lab.read_service_command("verify_read_models", "--wait", "15")
    report.step(f"verify_read_models (exit {verified.returncode}): {_last_line(verified.stdout)}")
    equal = lab.read_rows(_READ_MODELS, {"ids": ids}) == live
    untouched = (
        lab.write_rows(_STORED, [ids]) == stored and lab.read_rows(_STORED, [ids]) == replica == stored
    )

    report.step(
        f"Reading one event ({TIMED:,} times, best of {REPEATS}) as the projector reads a message:"
        "\n    `from_wire` (parse, check, upcast) of the first stored deposit of each version."
    )
    timing = _timings({v: rows[0] for v, rows in deposits_by_version.items()})
    v1_references = sorted({line["reference"] for line in shown[1]}, key=str)
    v2_references = [line["reference"] for line in shown[2]]
    report.observed(
        [
            ("deposits stored as version 1", len(deposits_by_version[1])),
            ("deposits stored as version 2", len(deposits_by_version[2])),
            ("version 1 shown with reference", ", ".join(map(json.dumps, v1_references))),
            (
                "version 2 with a reference",
                f"{sum(r is not None for r in v2_references)} of {len(v2_references)}",
            ),
            ("rebuild, then verify", f"exit {rebuilt.returncode}, exit {verified.returncode}"),
            ("read models rebuilt = live", "yes" if equal else "NO"),
            ("stored rows untouched", "yes, write database and replica" if untouched else "NO"),
            ("read a version 1 deposit", f"{timing['read_v1_us']:.1f} us"),
            ("read a version 2 deposit", f"{timing['read_v2_us']:.1f} us"),
            ("the upcast step alone", f"{timing['upcast_us']:.2f} us"),
        ]
    )
    report.explain(
        "The store was never migrated: its version 1 rows are what the previous release wrote, in the\n"
        "write database and in the replica alike. Every reader (the projector from the broker and from the\n"
        "replica, the rebuild, verify's fold in SQL, the reporting subscriber) reads them through the same\n"
        "chain, so the rebuild from the log builds exactly what the projector built live from messages.\n"
        "The upcast itself is a dict copy with one key added, small beside parsing and checking the body."
    )
    report.panels(
        [(PIPELINE, "Events applied per second")],
        note="No panel tells the versions apart: both are applied alike. A version the projector cannot\n"
        "read is dead-lettered, with reason unsupported_schema_version in `python -m read_service dlq list`.",
    )
    report.result(
        {
            "accounts": ids,
            "v1_deposits": len(deposits_by_version[1]),
            "v2_deposits": len(deposits_by_version[2]),
            "v1_references": v1_references,
            "v2_references": v2_references,
            "stored_rows": len(stored),
            "rebuild_exit": rebuilt.returncode,
            "verify_exit": verified.returncode,
            "rebuild_equals_live": equal,
            "stored_untouched": untouched,
            **{name: round(value, 3) for name, value in timing.items()},
        }
    )
    ok = equal and untouched and (rebuilt.returncode, verified.returncode) == (0, 0)
    return 0 if ok else 1


def _deposit_both_ways(lab: Lab, client: Client, accounts: list[UUID], deposits: int) -> None:
    """Alternates the accounts, so each has deposits of both versions; waits until all are projected."""
    versions: dict[UUID, int] = {}
    for n in range(deposits):
        old, new = accounts[n % 2], accounts[(n + 1) % 2]
        versions[old] = deposit_v1(
            lab.write_database_url, old, f"{n + 1}.00", correlation_id="lab-v1"
        ).version
        reference = None if n % 4 == 3 else f"INV-{n:04d}"  # every fourth gives none
        answer = client.command(
            f"/api/accounts/{new}/deposit", {"amount": f"{n + 1}.50", "reference": reference}
        )
        versions[new] = answer.json()["version"]
    for account_id, version in versions.items():
        client.read_fresh(account_id, version)


def _statement(client: Client, account_id: str) -> list[dict[str, Any]]:
    return client.statement(UUID(account_id))


def _timings(rows: dict[int, tuple]) -> dict[str, float]:
    """Microseconds per read of a stored deposit of each version, its body as the relay publishes it."""
    bodies = {version: to_wire(_event(row)) for version, row in rows.items()}
    stored_v1 = json.loads(bodies[1])["data"]

    def best(read: Callable[[], object]) -> float:
        return min(timeit.repeat(read, number=TIMED, repeat=REPEATS)) / TIMED * 1e6

    return {
        "read_v1_us": best(lambda: from_wire(bodies[1])),
        "read_v2_us": best(lambda: from_wire(bodies[2])),
        "upcast_us": best(lambda: upcast("MoneyDeposited", 1, stored_v1)),
    }


def _event(row: tuple) -> EventEnvelope:
    """A stored row as the relay turns it into a message (outbox/store.py): the version it was stored with."""
    position, event_id, aggregate_id, version, event_type, schema_version, data, occurred_at, correlation = (
        row
    )
    return EventEnvelope(
        event_id=UUID(event_id),
        type=event_type,
        aggregate_id=UUID(aggregate_id),
        aggregate_version=version,
        position=position,
        occurred_at=occurred_at,
        data=json.loads(data),
        schema_version=schema_version,
        correlation_id=correlation,
    )


def _last_line(stdout: str) -> str:
    lines = [line for line in stdout.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"
