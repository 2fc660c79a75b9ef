"""Two clients change one account at once with If-Match (one gets 412); retries with one Idempotency-Key.

Optimistic concurrency: every command answers with the account's version (`ETag: "<version>"`). A client
that sends `If-Match: "<version>"` says "only if nobody changed the account since I saw it"; of two clients
that saw the same version, one wins and the other gets 412 and must re-read and decide again.
Idempotency: a client that timed out cannot know whether its command was applied. Sent again with the same
`Idempotency-Key`, the command returns the first answer (header `Idempotent-Replayed: true`) and changes
nothing; the same key with another body is refused with 422.
"""

from __future__ import annotations

import argparse
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from lab._support import API, PIPELINE, Lab, Report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="concurrency", description=__doc__)
    parser.add_argument("--rounds", type=int, default=20, help="If-Match races to run (default 20)")
    parser.add_argument("--retries", type=int, default=8, help="copies of the idempotent deposit (default 8)")
    args = parser.parse_args(argv)

    lab = Lab.running()
    report = Report("concurrency", __doc__)
    race = if_match_races(lab, report, args.rounds)
    retried = idempotent_retries(lab, report, args.retries)

    report.observed(
        [
            ("If-Match races", race["rounds"]),
            ("  won (200)", race["won"]),
            ("  refused (412 Precondition Failed)", race["refused"]),
            ("  other answers", race["other"]),
            ("  account version / balance", f"{race['version']} / {race['balance']}"),
            ("copies of one deposit (one key)", retried["requests"]),
            ("  answered 200", retried["ok"]),
            ("  marked Idempotent-Replayed", retried["replayed"]),
            ("  same answer body", "yes" if retried["same_body"] else "NO"),
            (
                "  deposits applied",
                f"{retried['effects']} (version {retried['version_before']} -> "
                f"{retried['version']}, balance {retried['balance']})",
            ),
            ("same key, other amount", retried["reuse_status"]),
        ]
    )
    report.explain(
        "The write-service locks the account row for each command (SELECT ... FOR UPDATE), so the two\n"
        "racing withdrawals run one after the other; the second finds a version that no longer matches its\n"
        "If-Match and is refused before anything is written. The idempotency key is stored in the command's\n"
        "own transaction: concurrent copies wait for the first to commit and then replay its answer."
    )
    report.panels([(API, "Client errors (4xx) by status"), (PIPELINE, "Commands per second")])
    report.result({"if_match": race, "idempotency": retried})
    return 0 if race["won"] == race["rounds"] == race["refused"] and retried["effects"] == 1 else 1


def if_match_races(lab: Lab, report: Report, rounds: int) -> dict:
    client = lab.client()
    account_id, version = client.open_account("lab-if-match", deposit="100.00")
    report.step(
        f"Account {account_id} holds 100.00 at version {version}. {rounds} rounds: two clients that both"
        f'\n    saw version v withdraw 1.00 at the same moment with If-Match: "v".'
    )
    barrier = threading.Barrier(2)
    won = refused = other = 0
    balance = "100.00"

    def withdraw(expected: int) -> tuple[int, dict]:
        racer = lab.client()
        try:
            barrier.wait()
            response = racer.command(
                f"/api/accounts/{account_id}/withdraw", {"amount": "1.00"}, {"If-Match": f'"{expected}"'}
            )
            return response.status_code, response.json()
        finally:
            racer.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in range(rounds):
            answers = list(pool.map(withdraw, [version, version]))
            for status, body in answers:
                if status == 200:
                    won += 1
                    version, balance = body["version"], body["balance"]
                elif status == 412:
                    refused += 1
                    example = body
                else:
                    other += 1
    client.close()
    if refused:
        report.detail(f"a refusal reads: {example['status']} {example['title']}: {example['detail']}")
    return {
        "account_id": str(account_id),
        "rounds": rounds,
        "won": won,
        "refused": refused,
        "other": other,
        "version": version,
        "balance": balance,
    }


def idempotent_retries(lab: Lab, report: Report, copies: int) -> dict:
    client = lab.client()
    account_id, version_before = client.open_account("lab-idempotency", deposit="10.00")
    key = f"lab-{uuid.uuid4()}"
    report.step(
        f"Account {account_id} holds 10.00. The same deposit of 25.00 is sent {copies} times with"
        f"\n    Idempotency-Key: {key} (half at once, half one after the other), then once with 26.00."
    )

    def deposit(amount: str = "25.00") -> tuple[int, bool, bytes]:
        sender = lab.client()
        try:
            response = sender.command(
                f"/api/accounts/{account_id}/deposit", {"amount": amount}, {"Idempotency-Key": key}
            )
            replayed = response.headers.get("Idempotent-Replayed") == "true"
            return response.status_code, replayed, response.content
        finally:
            sender.close()

    at_once = copies // 2
    with ThreadPoolExecutor(max_workers=max(at_once, 1)) as pool:
        answers = list(pool.map(lambda _: deposit(), range(at_once)))
    answers += [deposit() for _ in range(copies - at_once)]
    reuse_status = deposit("26.00")[0]

    written = lab.write_rows(
        "SELECT count(*) FILTER (WHERE event_type = 'MoneyDeposited'), max(aggregate_version)"
        " FROM events WHERE aggregate_id = %s",
        [str(account_id)],
    )[0]
    balance = lab.write_rows("SELECT balance FROM accounts WHERE id = %s", [str(account_id)])[0][0]
    client.close()
    return {
        "account_id": str(account_id),
        "key": key,
        "requests": copies,
        "ok": sum(status == 200 for status, _, _ in answers),
        "replayed": sum(replayed for _, replayed, _ in answers),
        "same_body": len({body for _, _, body in answers}) == 1,
        "effects": written[0] - 1,  # the opening deposit of 10.00 is the first MoneyDeposited
        "version_before": version_before,
        "version": written[1],
        "balance": str(balance),
        "balance_expected": str(Decimal("10.00") + Decimal("25.00")),
        "reuse_status": reuse_status,
    }
