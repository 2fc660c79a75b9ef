"""Partitions: each account's events reach one projector, in order; a killed projector's partitions move on.

RabbitMQ splits the events by account into partitions (a consistent-hash exchange on the header
`x-aggregate-id`), and each partition queue has a single active consumer. Every projector subscribes to every
partition: the first to subscribe receives it, the others stand by. This experiment starts a second
projector beside the running one (a standby on every partition, since the running one subscribed first),
sends concurrent commands to a few hot accounts, shows which projector holds which partition and accounts,
then kills the running projector with SIGKILL under load and measures how its partitions move to the standby.
Nothing is parked on the way: order holds by construction, not by the apply step's parking. Every balance and
statement is checked against the write side. Natively the killed projector is found by its metrics port (and
supervisord restarts it: it comes back as a standby); under Compose (LAB_SYSTEM=compose) `docker compose kill
projector`.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from devkit.metrics import sample, scrape
from devkit.polling import poll
from devkit.processes import PYTHON, ServiceProcess, free_port
from lab._support import PIPELINE, Client, Lab, Report

SIGNS = {"deposit": 1, "transfer_in": 1, "withdrawal": -1, "transfer_out": -1}
PARTITIONS_SEEN = 64  # partition labels looked for on /metrics (more than any partition count used here)


def standby_projector(lab: Lab, metrics_port: int) -> ServiceProcess:
    """`python -m read_service projector` started by the experiment, at DEBUG so that it logs which accounts
    each partition brings it (`partition_accounts`)."""
    return ServiceProcess(
        "projector-lab",
        [PYTHON, "-m", "read_service", "projector", "--metrics-port", str(metrics_port)],
        {
            "READ_DATABASE_URL": lab.read_database_url,
            "RABBITMQ_URL": lab.rabbitmq_url,
            "LOG_LEVEL": "DEBUG",
            "PROJECTOR_ORDINAL": "0",
            "PROJECTOR_REPLICAS": "1",
        },
    ).start()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scale", description=__doc__)
    parser.add_argument("--commands", type=int, default=600, help="commands to send (default 600)")
    parser.add_argument("--accounts", type=int, default=12, help="hot accounts (default 12)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    args = parser.parse_args(argv)

    lab = Lab.running()
    report = Report("scale", __doc__)
    report.step("Starting another projector (python -m read_service projector): a standby everywhere.")
    port = free_port()
    standby = standby_projector(lab, port)
    try:
        if not poll(lambda: standby.logged("broker_connected") or not standby.running, 30, 0.1):
            raise SystemExit("the second projector did not connect to RabbitMQ within 30 s")
        if not standby.running:
            raise SystemExit(f"the second projector exited with {standby.terminate()}")
        time.sleep(1.0)  # its first receive subscribes it to every partition
        return run(lab, report, standby, f"http://127.0.0.1:{port}/metrics", args)
    finally:
        standby.terminate(timeout=20)


def run(lab: Lab, report: Report, standby: ServiceProcess, standby_metrics: str, args: Any) -> int:
    client = lab.client()
    accounts = [client.open_account(f"lab-scale-{i}", deposit="1000.00")[0] for i in range(args.accounts)]
    parked_before, drained_before = _pending_counters(lab)
    first_half = args.commands // 2

    report.step(f"Sending {first_half} commands from {args.clients} clients to {args.accounts} accounts.")
    statuses = _send(lab, accounts, range(first_half), args.clients)
    truth = _truth(lab, accounts)
    _converge(client, truth)
    before = {
        "projector": _active_partitions(lab.projector_metrics),
        "projector-lab": _active_partitions(standby_metrics),
    }
    count = _partition_count(lab.projector_metrics)

    report.step("Killing the running projector (SIGKILL) while the other half of the commands is sent.")
    sending = threading.Thread(
        target=lambda: statuses.extend(_send(lab, accounts, range(first_half, args.commands), args.clients))
    )
    sent_before_kill = len(statuses)
    sending.start()
    poll(lambda: _events_written(lab, accounts) > _events_written_total(truth) + 40, 30, 0.02)
    victim = _kill_projector(lab)
    killed_at = time.time()
    sending.join()
    truth = _truth(lab, accounts)
    started = time.monotonic()
    converged = _converge(client, truth)
    converged_in = time.monotonic() - started

    parked, drained = _settled_pending_counters(lab, parked_before, drained_before)
    left_waiting = lab.read_rows("SELECT count(*) FROM pending_events")[0][0]
    taken = [(line["partition"], _timestamp(line)) for line in standby.logged("partition_active")]
    took_over = sorted({partition for partition, at in taken if at >= killed_at - 0.5})
    first_delivery = min((at for _, at in taken if at >= killed_at - 0.5), default=None)
    pause = None if first_delivery is None else max(0.0, first_delivery - killed_at)
    applied_by_standby = sum(
        line.get("applied", 0) for line in standby.logged("batch_applied") if line.get("path") == "broker"
    )
    partition_of_account = _partitions_of_accounts(standby, accounts)
    after = {"projector-lab": _active_partitions(standby_metrics)}
    report.step("Checking every balance, version and statement against the write side.")
    checks = {str(a): _check(client, a, *truth[a]) for a in accounts}
    client.close()

    events = _events_written_total(truth)
    correct = bool(converged) and all(c["correct"] for c in checks.values()) and left_waiting == 0
    accepted = sum(s in (200, 201) for s in statuses)
    by_partition: dict[str, list[str]] = {}
    for account, partition in sorted(partition_of_account.items(), key=lambda item: str(item[1])):
        by_partition.setdefault(str(partition), []).append(account[:8])
    report.observed(
        [
            ("partitions", f"{count} (read-service.projector.p0 .. p{count - 1})"),
            ("before the kill, projector", f"active on {before['projector'] or 'none'}"),
            ("before the kill, projector-lab", f"active on {before['projector-lab'] or 'none'} (a standby)"),
            ("accounts by partition", "; ".join(f"p{p}: {', '.join(a)}" for p, a in by_partition.items())),
            ("killed", f"{victim} after {sent_before_kill} commands"),
            ("taken over by projector-lab", f"partitions {took_over}"),
            ("first delivery after the kill", "not seen" if pause is None else f"{pause:.2f} s"),
            ("after the kill, projector-lab", f"active on {after['projector-lab']}"),
            ("applied by projector-lab", applied_by_standby),
            ("commands accepted", f"{accepted} of {args.commands} (refused 409: {statuses.count(409)})"),
            ("events of these accounts", events),
            ("read side converged", f"{converged_in:.1f} s after the last command"),
            ("early arrivals parked", parked),
            ("still waiting at the end", left_waiting),
            ("balances, versions, statements", "all equal the write side" if correct else "WRONG"),
        ]
    )
    report.explain(
        "Each account's events went to one partition, and each partition to one projector at a time, in\n"
        "the order the relay published them: no event arrived before its predecessor, so nothing was parked\n"
        f"({parked}). The second projector applied nothing until the first died: it stood by on every\n"
        "partition. When the running projector was killed, RabbitMQ returned the messages it had not\n"
        "acknowledged to their partitions and made the standby their consumer; it received them first, so\n"
        "order held across the failover, and events applied by the dead one but not acknowledged came again\n"
        "as counted duplicates. The pause is how long RabbitMQ took to see the closed connection (at once\n"
        "for a killed process; up to the 30 s heartbeat for a vanished machine). A projector that comes\n"
        "back (supervisord restarts it natively) subscribes again as a standby: partitions stay put."
    )
    report.panels(
        [
            (PIPELINE, "Consumers on the projector queue"),
            (PIPELINE, "Events applied per second"),
            (PIPELINE, "Projector queue depth"),
            (PIPELINE, "End-to-end lag (commit to applied)"),
        ]
    )
    report.result(
        {
            "commands": args.commands,
            "accepted": accepted,
            "events": events,
            "partitions": count,
            "active_before_kill": before,
            "active_after_kill": after,
            "killed": victim,
            "taken_over": took_over,
            "takeover_seconds": pause,
            "applied_by_standby": applied_by_standby,
            "partition_of_account": partition_of_account,
            "parked": parked,
            "drained": drained,
            "left_waiting": left_waiting,
            "accounts": checks,
            "correct": correct,
        }
    )
    return 0 if correct else 1


def _send(lab: Lab, accounts: list[UUID], numbers: range, clients: int) -> list[int]:
    local = threading.local()

    def send(n: int) -> int:
        if not hasattr(local, "client"):
            local.client = lab.client()  # one keep-alive session per sending thread
        return _command(local.client, accounts, n)

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(send, numbers))


def _truth(lab: Lab, accounts: list[UUID]) -> dict[UUID, tuple[Decimal, int]]:
    truth = {}
    for account_id in accounts:
        ((balance, version),) = lab.write_rows(
            "SELECT balance, version FROM accounts WHERE id = %s", [str(account_id)]
        )
        truth[account_id] = (balance, version)
    return truth


def _events_written(lab: Lab, accounts: list[UUID]) -> int:
    ((count,),) = lab.write_rows(
        "SELECT count(*) FROM events WHERE aggregate_id = ANY(%s::uuid[])", [[str(a) for a in accounts]]
    )
    return count


def _events_written_total(truth: dict[UUID, tuple[Decimal, int]]) -> int:
    return sum(version for _, version in truth.values())


def _converge(client: Client, truth: dict[UUID, tuple[Decimal, int]]) -> bool:
    return bool(
        poll(
            lambda: all(client.read_account(a).json()["version"] == v for a, (_, v) in truth.items()),
            90,
            0.1,
        )
    )


def _active_partitions(metrics_url: str) -> list[int]:
    """The partitions a projector says, on /metrics, it is active on."""
    exposition = scrape(metrics_url)
    if exposition is None:
        return []
    return [
        p
        for p in range(PARTITIONS_SEEN)
        if sample(exposition, "cqrs_projector_partition_active", partition=str(p)) == 1
    ]


def _partition_count(metrics_url: str) -> int:
    exposition = scrape(metrics_url) or ""
    return sum(
        sample(exposition, "cqrs_projector_partition_active", partition=str(p)) is not None
        for p in range(PARTITIONS_SEEN)
    )


def _partitions_of_accounts(standby: ServiceProcess, accounts: list[UUID]) -> dict[str, int]:
    """Each hot account's partition, as the standby saw it once it held every partition."""
    wanted = {str(a) for a in accounts}
    found: dict[str, int] = {}
    for line in standby.logged("partition_accounts"):
        for partition, ids in line.get("accounts", {}).items():
            for account in ids:
                if account in wanted and partition not in ("null", "None"):
                    found[account] = int(partition)
    return found


def _kill_projector(lab: Lab) -> str:
    """SIGKILL to the running projector: the Compose container, or natively the process that serves its
    metrics port."""
    if lab.compose_project:
        lab.compose("kill", "projector")
        return "the projector container (docker compose kill)"
    port = urlsplit(lab.projector_metrics).port or 9102
    pid = _listening_pid(port)
    if pid is None:
        raise SystemExit(f"no process of this machine listens on {port}: is the projector running here?")
    os.kill(pid, signal.SIGKILL)
    return f"the projector (pid {pid}, metrics port {port})"


def _listening_pid(port: int) -> int | None:
    """The process whose socket listens on `port` (/proc: the socket's inode, then the fd that holds it)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(fields[9])
    for process in Path("/proc").iterdir():
        if not process.name.isdigit():
            continue
        try:
            for fd in (process / "fd").iterdir():
                if os.readlink(fd).removeprefix("socket:[").removesuffix("]") in inodes:
                    return int(process.name)
        except OSError:
            continue
    return None


def _timestamp(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()


def _command(client: Client, accounts: list[UUID], n: int) -> int:
    rng = random.Random(n)
    amount = f"{rng.randint(1, 5000) / 100:.2f}"
    kind = rng.choice(["deposit", "withdraw", "transfer", "transfer"])
    if kind == "transfer":
        source, target = rng.sample(accounts, 2)
        body = {"from_account": str(source), "to_account": str(target), "amount": amount}
        return client.command("/api/transfers", body).status_code
    return client.command(f"/api/accounts/{rng.choice(accounts)}/{kind}", {"amount": amount}).status_code


def _pending_counters(lab: Lab) -> tuple[int, int]:
    """Rows ever inserted into and deleted from pending_events (PostgreSQL's cumulative statistics)."""
    ((inserted, deleted),) = lab.read_rows(
        "SELECT n_tup_ins, n_tup_del FROM pg_stat_user_tables WHERE relname = 'pending_events'"
    )
    return inserted, deleted


def _settled_pending_counters(lab: Lab, inserted_before: int, deleted_before: int) -> tuple[int, int]:
    """The counters' growth once every backend has reported. A busy backend reports its statistics about once
    a second, an idle one only after 10 s of idleness (PostgreSQL 15), so the counters are read until they
    have not moved for longer than that."""
    quiet_for = 11.0
    current = _pending_counters(lab)
    changed_at = time.monotonic()
    deadline = changed_at + 45.0
    while time.monotonic() < deadline:
        time.sleep(0.5)
        latest = _pending_counters(lab)
        if latest != current:
            current, changed_at = latest, time.monotonic()
        elif time.monotonic() - changed_at > quiet_for:
            break
    return current[0] - inserted_before, current[1] - deleted_before


def _check(client: Client, account_id: UUID, balance: Decimal, version: int) -> dict[str, Any]:
    """Balance and version as on the write side; statement versions 2..version with a consistent running
    balance."""
    read = client.read_account(account_id).json()
    lines = client.statement(account_id)
    running = Decimal("0")
    chained = True
    for line in lines:
        running += SIGNS[line["kind"]] * Decimal(line["amount"])
        chained = chained and Decimal(line["balance_after"]) == running
    return {
        "balance": read["balance"],
        "version": read["version"],
        "statement_lines": len(lines),
        "correct": Decimal(read["balance"]) == balance
        and read["version"] == version
        and [line["version"] for line in lines] == list(range(2, version + 1))
        and chained
        and running == balance,
    }
