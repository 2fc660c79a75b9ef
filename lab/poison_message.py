"""A malformed event is dead-lettered, the projector keeps going; `dlq list` finds it, fixed it is replayed.

A message the projector cannot read (bad JSON, a missing field, an unknown type) is not retried forever:
the projector rejects it, RabbitMQ moves it to `read-service.projector.dlq` through the dead-letter exchange,
the projector records it in the read database and carries on with the next message. An operator lists what
is there (`python -m read_service dlq list`), fixes the cause, and sends it back (`dlq replay`).
Here a producer with a typo re-sends a real deposit as `"amout"` instead of `"amount"`.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any
from uuid import UUID

from cqrs_common.events import EventEnvelope, to_wire
from cqrs_common.messaging import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    Consumer,
    Delivery,
)
from devkit import messages
from devkit.polling import poll
from lab._support import PIPELINE, Lab, Report, ms


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="poison-message", description=__doc__)
    parser.add_argument(
        "--hold", type=float, default=0.0, help="seconds it waits in the DLQ before the fix (default 0)"
    )
    args = parser.parse_args(argv)
    lab = Lab.running()
    report = Report("poison-message", __doc__)
    with Consumer(lab.rabbitmq_url, connection_name="lab-poison-message") as broker:
        return run(lab, report, broker, args.hold)


def run(lab: Lab, report: Report, broker: Consumer, hold: float) -> int:
    client = lab.client()
    account_id, version = client.open_account("lab-poison", deposit="10.00")
    client.read_fresh(account_id, version)
    dlq_before = broker.message_count(DEAD_LETTER_QUEUE)
    dead_lettered_before = client.projection()["dead_lettered"]
    duplicates_before = lab.metric(lab.projector_metrics, "cqrs_events_duplicate_total", path="broker")
    report.step(
        f"Account {account_id} holds 10.00 (version {version}), projected. The dead-letter queue holds"
        f" {dlq_before} message(s)."
    )

    event = _stored_event(lab, account_id, version)
    good = json.loads(to_wire(event))
    bad = {**good, "data": _renamed(good["data"], "amount", "amout")}
    correlation_id = f"lab-poison-{str(event.event_id)[:8]}"
    broker.republish(_message(bad, event, correlation_id))
    published_at = time.monotonic()
    report.step(
        f"Published to cqrs.events a copy of that deposit (event {event.event_id}) with data "
        f"{json.dumps(bad['data'])}."
    )

    started = time.monotonic()
    next_command = client.command(f"/api/accounts/{account_id}/deposit", {"amount": "5.00"}).json()
    client.read_fresh(account_id, next_command["version"])
    kept_going_ms = ms(time.monotonic() - started)
    report.step(
        f"Deposited 5.00 right behind it: projected (version {next_command['version']}) {kept_going_ms} ms"
        " after the command; the poison blocks nothing."
    )

    arrived = poll(lambda: broker.message_count(DEAD_LETTER_QUEUE) > dlq_before, timeout=15, interval=0.1)
    dead_lettered_ms = ms(time.monotonic() - published_at)
    listed = lab.read_service_command("dlq", "list")
    records = [json.loads(line) for line in listed.stdout.splitlines() if line.startswith("{")]
    ours = [r for r in records if r["message_id"] == str(event.event_id)]
    report.step("`python -m read_service dlq list` shows:")
    for record in ours:
        report.detail(json.dumps(record))
    report.detail(listed.stdout.strip().splitlines()[-1] if listed.stdout.strip() else listed.stderr[-500:])
    dead_lettered_during = client.projection()["dead_lettered"]
    if hold > 0:
        report.step(f"Leaving it there for {hold:g} s (Prometheus scrapes every 5 s).")
        time.sleep(hold)

    fixed = _fix_in_dead_letter_queue(broker, str(event.event_id))
    report.step(
        'Fixed: took the message out of the DLQ, renamed "amout" back to "amount", put the corrected copy'
        "\n    back (same message id) through cqrs.events.dlx."
    )
    replay = lab.read_service_command("dlq", "replay")
    report.step(f"`python -m read_service dlq replay`: {replay.stdout.strip() or replay.stderr[-500:]}")

    poll(
        lambda: broker.message_count(DEAD_LETTER_QUEUE) == 0 and broker.backlog() == 0,
        timeout=15,
        interval=0.1,
    )
    duplicates_after = poll(
        lambda: _grew(
            lab.metric(lab.projector_metrics, "cqrs_events_duplicate_total", path="broker"),
            duplicates_before,
        ),
        timeout=10,
        interval=0.1,
    )
    dead_lettered_after = client.projection()["dead_lettered"]
    read = client.read_account(account_id).json()
    lines = client.statement(account_id)
    write_balance, write_version = lab.write_rows(
        "SELECT balance, version FROM accounts WHERE id = %s", [str(account_id)]
    )[0]
    client.close()

    consistent = Decimal(read["balance"]) == write_balance and read["version"] == write_version
    report.observed(
        [
            ("found in the DLQ within", f"{dead_lettered_ms} ms" if arrived else "NOT within 15 s"),
            ("reason recorded", ", ".join(f"{r['reason']}: {r['detail']}" for r in ours) or "none"),
            ("next command projected after", f"{kept_going_ms} ms"),
            (
                "/api/projection dead_lettered",
                f"{dead_lettered_before} -> {dead_lettered_during} -> "
                f"{dead_lettered_after} (before, poisoned, replayed)",
            ),
            ("messages in the DLQ now", broker.message_count(DEAD_LETTER_QUEUE)),
            ("replayed copy counted as duplicate", _delta(duplicates_before, duplicates_after)),
            (
                "account on the read side",
                f"balance {read['balance']}, version {read['version']}, {len(lines)} statement lines",
            ),
            ("account on the write side", f"balance {write_balance}, version {write_version}"),
        ]
    )
    report.explain(
        "The corrected message is the same event the relay had already delivered intact, so the apply\n"
        "step recognises its version as applied and ignores it: replaying is always safe, nothing is\n"
        "applied twice. A message that is garbage for good is dropped with `dlq purge` instead.\n"
        "`dlq replay` resends every message in the DLQ; one that fails again simply returns there."
    )
    report.panels(
        [
            (PIPELINE, "Dead-letter queue"),
            (PIPELINE, "Dead-lettered messages"),
            (PIPELINE, "Events applied per second"),
        ]
    )
    report.result(
        {
            "account_id": str(account_id),
            "event_id": str(event.event_id),
            "dead_lettered": bool(arrived),
            "records": ours,
            "dlq_before": dlq_before,
            "dlq_after": broker.message_count(DEAD_LETTER_QUEUE),
            "projection_dead_lettered": [dead_lettered_before, dead_lettered_during, dead_lettered_after],
            "fixed": fixed,
            "replay_output": replay.stdout.strip(),
            "duplicates_counted": _delta(duplicates_before, duplicates_after),
            "next_command_projected_ms": kept_going_ms,
            "read_balance": read["balance"],
            "read_version": read["version"],
            "statement_lines": len(lines),
            "consistent": consistent,
        }
    )
    return 0 if arrived and fixed and consistent else 1


def _renamed(data: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """`data` with its field `old` called `new`, the others as they were."""
    return {new if name == old else name: value for name, value in data.items()}


def _stored_event(lab: Lab, account_id: UUID, version: int) -> EventEnvelope:
    """The event as the write side stored it (and the relay published it)."""
    (row,) = lab.write_rows(
        "SELECT event_id, event_type, schema_version, aggregate_id, aggregate_version, position, occurred_at,"
        " data, correlation_id FROM events WHERE aggregate_id = %s AND aggregate_version = %s",
        [str(account_id), version],
    )
    (
        event_id,
        event_type,
        schema_version,
        aggregate_id,
        aggregate_version,
        position,
        occurred_at,
        data,
        correlation,
    ) = row
    return EventEnvelope(
        event_id=UUID(str(event_id)),
        type=event_type,
        aggregate_id=UUID(str(aggregate_id)),
        aggregate_version=aggregate_version,
        position=position,
        occurred_at=occurred_at,
        data=data,
        schema_version=schema_version,
        correlation_id=correlation,
    )


def _message(body: dict[str, Any], event: EventEnvelope, correlation_id: str) -> Delivery:
    encoded = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return messages.message(encoded, event.type, str(event.event_id), correlation_id)


def _fix_in_dead_letter_queue(broker: Consumer, message_id: str) -> bool:
    """Replaces the dead letter `message_id` with a corrected copy; other dead letters stay as they are."""
    others: list[Delivery] = []
    fixed = False
    for _ in range(broker.message_count(DEAD_LETTER_QUEUE)):
        delivery = broker.get(DEAD_LETTER_QUEUE)
        if delivery is None:
            break
        if delivery.message_id != message_id:
            others.append(delivery)
            continue
        body = json.loads(delivery.body)
        body["data"] = _renamed(body["data"], "amout", "amount")
        broker.republish(
            replace(delivery, body=json.dumps(body, separators=(",", ":"), sort_keys=True).encode()),
            exchange=DEAD_LETTER_EXCHANGE,
        )
        broker.ack(delivery.delivery_tag)
        fixed = True
        break
    for delivery in others:
        broker.requeue(delivery.delivery_tag)
    return fixed


def _grew(value: float | None, before: float | None) -> float | None:
    if value is None or before is None:
        return None
    return value if value > before else None


def _delta(before: float | None, after: float | None) -> int | str:
    if before is None:
        return "unknown (projector metrics not reachable)"
    return int((after or before) - before)
