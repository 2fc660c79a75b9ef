"""A subscriber that arrives late reads the log, then follows its queue: nothing lost, nothing twice.

The reporting subscriber (`python -m read_service reporting`) keeps daily totals per currency from the same
events as the projector, through a queue of its own. This experiment starts a second one, under a name of its
own, after events already exist and while clients keep sending commands. It binds its queue first (from then
on every event published waits there), reads the history from the replicated `events` table in commit
order, switches to the queue once the log holds an event committed after the bind, and skips the events it
meets twice around the switch by their ids. The experiment counts the events read from history and from the
queue and the duplicates skipped, and compares the totals with ones computed from the write side's events.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from uuid import UUID, uuid4

from cqrs_common.messaging import BrokerError, Consumer, reporting_queues
from devkit.polling import poll
from devkit.processes import PYTHON, ServiceProcess
from devkit.reporting import reporting_daily_totals, write_side_daily_totals
from lab._support import PIPELINE, Client, Lab, Report

CURRENCIES = ("EUR", "USD")


def late_subscriber(lab: Lab, subscription: str) -> ServiceProcess:
    """`python -m read_service reporting` under its own subscription name, as its own broker user."""
    return ServiceProcess(
        f"reporting-{subscription}",
        [PYTHON, "-m", "read_service", "reporting", "--subscription", subscription, "--metrics-port", "0"],
        {"READ_DATABASE_URL": lab.read_database_url, "RABBITMQ_URL": lab.reporting_rabbitmq_url},
    ).start()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="late-subscriber", description=__doc__)
    parser.add_argument("--history", type=int, default=300, help="commands before it starts (default 300)")
    parser.add_argument("--clients", type=int, default=4, help="clients sending meanwhile (default 4)")
    parser.add_argument(
        "--live-seconds", type=float, default=3.0, help="how long commands go on after the switch (default 3)"
    )
    args = parser.parse_args(argv)
    lab = Lab.running()
    report = Report("late-subscriber", __doc__)
    subscription = f"lab-late-{uuid4().hex[:8]}"
    try:
        return run(lab, report, subscription, args.history, args.clients, args.live_seconds)
    finally:
        _remove(lab, subscription)


def run(lab: Lab, report: Report, subscription: str, history: int, clients: int, live_seconds: float) -> int:
    client = lab.client()
    accounts = {c: [_open(client, c) for _ in range(3)] for c in CURRENCIES}
    report.step(f"Sending {history} commands before any late subscriber exists (its history).")
    for n in range(history):
        _command(client, accounts, n)
    events_before = lab.write_rows("SELECT count(*) FROM events")[0][0]

    report.step(f"{clients} clients keep sending commands; starting subscriber {subscription!r} meanwhile.")
    sending = threading.Event()
    sending.set()
    sent = [0] * clients

    def send(slot: int) -> None:
        sender = lab.client()
        n = 1_000_000 * (slot + 1)
        while sending.is_set():
            _command(sender, accounts, n)
            n += 1
            sent[slot] += 1
        sender.close()

    senders = [threading.Thread(target=send, args=(slot,), daemon=True) for slot in range(clients)]
    for sender in senders:
        sender.start()
    time.sleep(0.5)
    started = time.monotonic()
    subscriber = late_subscriber(lab, subscription)
    try:
        switch = subscriber.wait_for_log("reporting_switched_to_live", timeout=120)
        caught_up_in = time.monotonic() - started
        report.detail(f"live after {caught_up_in:.1f} s, {switch['history_events']} events read from the log")
        report.step(f"Commands go on for {live_seconds:.0f} s after the switch, then stop.")
        time.sleep(live_seconds)
        sending.clear()
        for sender in senders:
            sender.join(timeout=30)
        events_total = lab.write_rows("SELECT count(*) FROM events")[0][0]
        report.step("Waiting until it has counted every event of the write side.")
        counted = poll(lambda: _counted(lab, subscription) >= events_total, 60, 0.2)
        if not counted:
            raise SystemExit(f"only {_counted(lab, subscription)} of {events_total} events counted in 60 s")
    finally:
        subscriber.terminate(timeout=20)

    ((history_events, live_events, duplicates, phase),) = lab.read_rows(
        "SELECT history_events, live_events, live_duplicates, phase FROM reporting_subscriptions"
        " WHERE subscription = %s",
        [subscription],
    )
    ((stored, distinct, by_history, by_live),) = lab.read_rows(
        "SELECT count(*), count(DISTINCT event_id), count(*) FILTER (WHERE path = 'history'),"
        " count(*) FILTER (WHERE path = 'live') FROM reporting_counted_events WHERE subscription = %s",
        [subscription],
    )
    written_ids = {str(e) for (e,) in lab.write_rows("SELECT event_id FROM events")}
    counted_ids = {
        str(e)
        for (e,) in lab.read_rows(
            "SELECT event_id FROM reporting_counted_events WHERE subscription = %s", [subscription]
        )
    }
    truth = write_side_daily_totals(lab.write_database_url)
    totals = reporting_daily_totals(lab.read_database_url, subscription)
    missing, extra = len(written_ids - counted_ids), len(counted_ids - written_ids)
    correct = totals == truth and not missing and not extra and stored == distinct == len(written_ids)
    client.close()

    report.observed(
        [
            ("events before it started", events_before),
            ("events at the end", events_total),
            ("commands sent meanwhile", sum(sent)),
            ("counted from history (log)", history_events),
            ("counted live (queue)", live_events),
            ("duplicates skipped at the switch", duplicates),
            ("missing / counted twice", f"{missing} / {stored - distinct}"),
            ("daily totals", "equal the write side" if totals == truth else "DIFFER from the write side"),
            ("process start to live", f"{caught_up_in:.1f} s (reading the log: {switch['seconds']} s)"),
        ]
    )
    report.explain(
        "Its queue was bound before it read any history, so every event published from then on waited\n"
        "for it; the log gave everything committed before. The events in both (committed after the bind,\n"
        "read from the log before the switch) came again from the queue and were skipped by their ids:\n"
        "the duplicates above. Nothing was counted twice, nothing is missing."
    )
    report.panels([(PIPELINE, "Reporting subscriber lag")])
    report.result(
        {
            "subscription": subscription,
            "events_before": events_before,
            "events": events_total,
            "history_events": history_events,
            "live_events": live_events,
            "duplicates_skipped": duplicates,
            "counted_by_path": {"history": by_history, "live": by_live},
            "missing": missing,
            "extra": extra,
            "phase": phase,
            "catch_up_seconds": round(caught_up_in, 2),
            "log_read_seconds": switch["seconds"],
            "correct": correct,
        }
    )
    return 0 if correct else 1


def _open(client: Client, currency: str) -> UUID:
    response = client.command("/api/accounts", {"owner": "lab-late", "currency": currency})
    response.raise_for_status()
    account_id = UUID(response.json()["account_id"])
    client.command(f"/api/accounts/{account_id}/deposit", {"amount": "5000.00"}).raise_for_status()
    return account_id


def _command(client: Client, accounts: dict[str, list[UUID]], n: int) -> int:
    rng = random.Random(n)
    group = accounts[rng.choice(CURRENCIES)]
    amount = f"{rng.randint(1, 3000) / 100:.2f}"
    kind = rng.choice(["deposit", "withdraw", "transfer"])
    if kind == "transfer":
        source, target = rng.sample(group, 2)
        body = {"from_account": str(source), "to_account": str(target), "amount": amount}
        return client.command("/api/transfers", body).status_code
    return client.command(f"/api/accounts/{rng.choice(group)}/{kind}", {"amount": amount}).status_code


def _counted(lab: Lab, subscription: str) -> int:
    return lab.read_rows(
        "SELECT count(*) FROM reporting_counted_events WHERE subscription = %s", [subscription]
    )[0][0]


def _remove(lab: Lab, subscription: str) -> None:
    """The experiment's queues go (the running subscriber's are not touched)."""
    try:
        with Consumer(
            lab.reporting_rabbitmq_url, connection_name="lab-late-subscriber", declare=False
        ) as broker:
            broker.delete_subscriber(reporting_queues(subscription))
    except BrokerError as exc:
        print(f"could not delete the queues of {subscription}: {exc}")
    # Its rows stay, under its name: the numbers printed can be checked in reporting_* tables.
