"""Read right after a command (often stale), then with min_version (always fresh): how often, how stale.

The write-service answers as soon as its transaction commits; the read model changes only after the relay
has published the event and the projector has applied it. A client that reads at once sees the state before
its own write, unless it asks the read-service to wait for the version the command returned
(`?min_version=N`, or the `X-Consistency-Token` header the command sent back).
"""

from __future__ import annotations

import argparse
import time
from decimal import Decimal
from typing import Any
from uuid import UUID

from lab._support import API, PIPELINE, Client, Lab, Report, ms, percentile


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="eventual-consistency", description=__doc__)
    parser.add_argument("--commands", type=int, default=200, help="deposits to send (default 200)")
    parser.add_argument("--accounts", type=int, default=4, help="accounts they are spread over (default 4)")
    args = parser.parse_args(argv)

    lab = Lab.running()
    report = Report("eventual-consistency", __doc__)
    with lab.client() as client:
        return run(lab, report, client, args.commands, args.accounts)


def run(lab: Lab, report: Report, client: Client, commands: int, account_count: int) -> int:
    report.step(f"Opening {account_count} accounts and waiting until the read side has them.")
    accounts = [client.open_account(f"lab-consistency-{i}")[0] for i in range(account_count)]
    for account_id in accounts:
        client.read_fresh(account_id, 1)

    report.step(
        f"Sending {commands} deposits of 1.00, one at a time. After each: GET the account at once (no wait),"
        "\n    then GET it again with ?min_version=<the version the command returned>."
    )
    stale_behind: list[int] = []  # versions the immediate read was behind, per stale read
    fresh_waits: list[float] = []  # seconds the min_version read took, per command
    waits_after_stale: list[float] = []
    not_found = fresh = refused = 0
    last: dict[UUID, dict[str, Any]] = {}
    for n in range(commands):
        account_id = accounts[n % account_count]
        response = client.command(f"/api/accounts/{account_id}/deposit", {"amount": "1.00"})
        response.raise_for_status()
        written = response.json()
        last[account_id] = written

        immediate = client.read_account(account_id)
        seen = immediate.json()["version"] if immediate.status_code == 200 else 0  # 404: not projected yet
        not_found += immediate.status_code == 404
        was_stale = seen < written["version"]
        if was_stale:
            stale_behind.append(written["version"] - seen)

        started = time.monotonic()
        waited = client.read_account(account_id, min_version=written["version"], wait_ms=10000)
        took = time.monotonic() - started
        if waited.status_code == 200 and waited.json()["version"] >= written["version"]:
            fresh += 1
            fresh_waits.append(took)
            if was_stale:
                waits_after_stale.append(took)
        else:
            refused += 1

    report.step("Comparing the read side's final balances with the write side's.")
    final = {}
    for account_id in accounts:
        read = client.read_account(account_id).json()
        final[str(account_id)] = {
            "version": read["version"],
            "balance": read["balance"],
            "written_version": last[account_id]["version"],
            "written_balance": last[account_id]["balance"],
        }
    converged = all(
        f["version"] == f["written_version"] and Decimal(f["balance"]) == Decimal(f["written_balance"])
        for f in final.values()
    )

    stale = len(stale_behind)
    report.observed(
        [
            ("commands sent", commands),
            ("stale immediate reads", f"{stale} of {commands} ({100 * stale / commands:.1f}%)"),
            ("  of which 404 (not projected)", not_found),
            ("versions behind when stale", f"max {max(stale_behind, default=0)}"),
            ("fresh reads with min_version", f"{fresh} of {commands}"),
            ("min_version reads refused (503)", refused),
            (
                "min_version read time",
                f"p50 {ms(percentile(fresh_waits, 50))} ms, p99 {ms(percentile(fresh_waits, 99))} ms, "
                f"max {ms(max(fresh_waits, default=0))} ms",
            ),
            (
                "  after a stale read",
                f"p50 {ms(percentile(waits_after_stale, 50))} ms, "
                f"max {ms(max(waits_after_stale, default=0))} ms",
            ),
            ("read side equals write side", "yes" if converged else "NO"),
        ]
    )
    report.explain(
        "A stale read is not an error: the command was committed and its event is on its way. How often you\n"
        "see one depends on how fast you read after the command compared with the pipeline's lag (commit ->\n"
        "relay -> RabbitMQ -> projector -> read DB). The time a min_version read took after a stale read is\n"
        "roughly how long the read side stayed behind. Reading with min_version costs that wait and never\n"
        "returns an older state than the client's own write."
    )
    report.panels(
        [
            (PIPELINE, "End-to-end lag (commit to applied)"),
            (PIPELINE, "End-to-end lag p99"),
            (API, "Latency p99 per endpoint"),
        ]
    )
    report.result(
        {
            "commands": commands,
            "stale_reads": stale,
            "not_found_reads": not_found,
            "max_versions_behind": max(stale_behind, default=0),
            "fresh_with_min_version": fresh,
            "min_version_refused": refused,
            "min_version_ms": {
                "p50": ms(percentile(fresh_waits, 50)),
                "p99": ms(percentile(fresh_waits, 99)),
                "max": ms(max(fresh_waits, default=0)),
            },
            "accounts": final,
            "converged": converged,
        }
    )
    return 0 if converged and fresh == commands else 1
