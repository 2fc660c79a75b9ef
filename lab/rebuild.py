"""Damage the read models, find the drift with verify_read_models, rebuild them from the event log.

Read models are disposable: they are a fold of the events, and the read database holds every event in its
replicated `events` table. `python -m read_service verify_read_models` folds that log independently of the
projection handlers and reports every account whose read model differs; `rebuild_read_models` replays the
whole log into shadow tables with the projector's own apply step and swaps them in at once, while queries
are served and the projector keeps applying new events. Here a wrong balance is written into one account
and the statement lines of another are deleted, as a bad manual fix would.
Note: the rebuild replaces the read models of EVERY account of this read database.
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import threading
import time
from decimal import Decimal
from uuid import UUID

from lab._support import API, PIPELINE, Client, Lab, Report

COMMANDS = ("verify_read_models", "rebuild_read_models")
SKIPPED = 3  # exit status when the maintenance commands do not exist in this checkout
_DRIFT = re.compile(r"^DRIFT account (?P<account>[0-9a-f-]{36}): (?P<what>.*)$")
_REBUILT = re.compile(r"rebuilt (?P<accounts>\d+) account\(s\) from (?P<events>\d+) event\(s\)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="rebuild", description=__doc__)
    parser.add_argument("--commands", type=int, default=40, help="commands before the damage (default 40)")
    args = parser.parse_args(argv)
    lab = Lab.from_env()
    missing = missing_commands(lab)
    if missing:
        print(f"SKIPPED: this checkout has no {' / '.join(missing)} command (python -m read_service help).")
        return SKIPPED
    lab.require_running()
    report = Report("rebuild", __doc__)
    with lab.client() as client:
        return run(lab, report, client, args.commands)


def missing_commands(lab: Lab) -> list[str]:
    listed = lab.read_service_command("help", "--commands").stdout.split()
    return [command for command in COMMANDS if command not in listed]


def run(lab: Lab, report: Report, client: Client, commands: int) -> int:
    accounts = [client.open_account(f"lab-rebuild-{i}", deposit="500.00")[0] for i in range(3)]
    _transfers(client, accounts, commands)
    report.step(f"3 accounts, {commands} transfers between them, all projected.")
    before = _verify(lab, report)

    damaged, emptied = accounts[0], accounts[1]
    true_balance = client.read_account(damaged).json()["balance"]
    lab.read_rows("UPDATE account_view SET balance = 999999.99 WHERE account_id = %s", [str(damaged)])
    (deleted,) = lab.read_rows(
        "WITH gone AS (DELETE FROM statement_lines WHERE account_id = %s RETURNING 1)"
        " SELECT count(*) FROM gone",
        [str(emptied)],
    )[0]
    shown = client.read_account(damaged).json()["balance"]
    report.step(
        f"Damaged: account {damaged} balance {true_balance} -> 999999.99 (the API now answers {shown});"
        f"\n    {deleted} statement lines of account {emptied} deleted."
    )
    found = _verify(lab, report)
    drifts = [m.groupdict() for m in map(_DRIFT.match, found.stdout.splitlines()) if m]
    for drift in drifts:
        report.detail(f"DRIFT {drift['account']}: {drift['what']}")

    rebuilt, sent_during, took = _rebuild_under_traffic(lab, accounts[2])
    counts = _REBUILT.search(rebuilt.stdout)
    report.step(f"rebuild_read_models (exit {rebuilt.returncode}), {len(sent_during)} deposits meanwhile")
    report.detail(rebuilt.stdout.strip() or rebuilt.stderr.strip()[-800:])
    if sent_during:
        client.read_fresh(accounts[2], max(sent_during))
    after = _verify(lab, report)

    restored = client.read_account(damaged).json()["balance"]
    lines = len(client.statement(emptied))
    matches = _matches_write_side(lab, client, accounts)
    rebuilt_text = (
        f"{counts['accounts']} account(s) from {counts['events']} event(s), {took:.1f} s with start-up"
        if counts
        else "NOT rebuilt"
    )
    report.observed(
        [
            ("verify before the damage", f"exit {before.returncode}"),
            ("verify after the damage", f"exit {found.returncode}, {len(drifts)} account(s) drifted"),
            ("rebuilt", rebuilt_text),
            ("deposits during the rebuild", f"{len(sent_during)}, all projected" if sent_during else "0"),
            ("verify after the rebuild", f"exit {after.returncode}"),
            ("damaged balance", f"{true_balance} -> 999999.99 -> {restored}"),
            ("statement lines restored", lines),
            ("read side equals write side", "yes" if matches else "NO"),
        ]
    )
    report.explain(
        "verify_read_models compares each account view, statement and currency total with an independent\n"
        "fold of the log, so it finds damage the projector cannot see (it never reads what it wrote).\n"
        "The rebuild needs nothing but the log: the replicated events table already sits in the read\n"
        "database. The projector waited only for the final swap; events it applied during the build were\n"
        "carried over, which is why the deposits sent meanwhile are all there."
    )
    report.panels(
        [(PIPELINE, "Events applied per second"), (API, "Latency p99 per endpoint")],
        note="No panel shows the rebuild itself (a one-off command nobody scrapes). These show what it must\n"
        "not disturb: the projector keeps applying, and queries wait at most for the swap.",
    )
    report.result(
        {
            "accounts": [str(a) for a in accounts],
            "damaged_balance": str(damaged),
            "emptied_statement": str(emptied),
            "statement_lines_deleted": deleted,
            "verify_exit": [before.returncode, found.returncode, after.returncode],
            "rebuild_exit": rebuilt.returncode,
            "drifted": sorted(d["account"] for d in drifts),
            "rebuilt_accounts": int(counts["accounts"]) if counts else None,
            "rebuilt_events": int(counts["events"]) if counts else None,
            "deposits_during_rebuild": len(sent_during),
            "restored_balance": restored,
            "true_balance": true_balance,
            "statement_lines": lines,
            "matches_write_side": matches,
        }
    )
    ok = (before.returncode, found.returncode, after.returncode, rebuilt.returncode) == (0, 1, 0, 0)
    return 0 if ok and matches else 1


def _transfers(client: Client, accounts: list[UUID], commands: int) -> None:
    """Random transfers between the accounts, then waits until the read side shows them all."""
    rng = random.Random(7)
    versions: dict[UUID, int] = {}
    for _ in range(commands):
        source, target = rng.sample(accounts, 2)
        amount = f"{rng.randint(1, 900) / 100:.2f}"
        body = {"from_account": str(source), "to_account": str(target), "amount": amount}
        answer = client.command("/api/transfers", body).json()
        versions[source] = answer["from_account"]["version"]
        versions[target] = answer["to_account"]["version"]
    for account_id, version in versions.items():
        client.read_fresh(account_id, version)


def _verify(lab: Lab, report: Report) -> subprocess.CompletedProcess[str]:
    checked = lab.read_service_command("verify_read_models", "--wait", "15")
    report.step(f"verify_read_models (exit {checked.returncode}): {_summary(checked.stdout)}")
    return checked


def _rebuild_under_traffic(
    lab: Lab, account_id: UUID
) -> tuple[subprocess.CompletedProcess[str], list[int], float]:
    """Runs rebuild_read_models while depositing into `account_id` every 50 ms; returns the command's
    outcome, the versions of the deposits sent meanwhile, and how long it took."""
    sent: list[int] = []
    sending = threading.Event()
    sending.set()

    def traffic() -> None:
        sender = lab.client()
        try:
            while sending.is_set():
                answer = sender.command(f"/api/accounts/{account_id}/deposit", {"amount": "1.00"})
                sent.append(answer.json()["version"])
                time.sleep(0.05)
        finally:
            sender.close()

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        rebuilt = lab.read_service_command("rebuild_read_models", timeout=300)
    finally:
        sending.clear()
        thread.join(timeout=10)
    return rebuilt, sent, time.monotonic() - started


def _matches_write_side(lab: Lab, client: Client, accounts: list[UUID]) -> bool:
    truth = lab.write_rows(
        "SELECT id, balance, version FROM accounts WHERE id = ANY(%s::uuid[])", [[str(a) for a in accounts]]
    )
    for account_id, balance, version in truth:
        read = client.read_account(UUID(str(account_id))).json()
        if Decimal(read["balance"]) != balance or read["version"] != version:
            return False
    return len(truth) == len(accounts)


def _summary(stdout: str) -> str:
    """verify_read_models' verdict line ("clean: ..." or "N account(s) drifted: ...")."""
    for line in stdout.splitlines():
        if line.startswith("clean:") or (" drifted" in line and not line.startswith("DRIFT")):
            return line
    return stdout.strip().splitlines()[-1] if stdout.strip() else "(no output)"
