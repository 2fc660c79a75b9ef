#!/usr/bin/env python3
"""A small load generator for a running cqrs-lab (Tilt's `load-generator` button, or by hand).

    python3 deploy/tilt/loadgen.py --write-url http://localhost:8001 --read-url http://localhost:8002

Opens a few accounts, then deposits and transfers between them until the time or request budget is spent,
and finally asks the read side for the last account's version with read-your-writes (`min_version`), so it
also shows that the projection caught up. Standard library only: it runs from any Python 3.11.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal

MAX_SECONDS = 600


def call(method: str, url: str, token: str | None = None, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=35) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def run(write_url: str, read_url: str, token: str, seconds: float, max_requests: int, accounts: int) -> int:
    ids: list[str] = []
    versions: dict[str, int] = {}
    for n in range(accounts):
        status, body = call(
            "POST", f"{write_url}/api/accounts", token, {"owner": f"load-{n}", "currency": "EUR"}
        )
        if status != 201:
            print(f"opening an account failed: {status} {body}", file=sys.stderr)
            return 1
        ids.append(body["account_id"])
        versions[body["account_id"]] = body["version"]

    outcomes: dict[int, int] = {}
    started = time.monotonic()
    sent = 0
    while sent < max_requests and time.monotonic() - started < seconds:
        account = random.choice(ids)
        amount = str(Decimal(random.randint(100, 10_000)) / 100)
        if random.random() < 0.6 or len(ids) < 2:
            status, body = call(
                "POST", f"{write_url}/api/accounts/{account}/deposit", token, {"amount": amount}
            )
            if status == 200:
                versions[account] = body["version"]
        else:
            target = random.choice([i for i in ids if i != account])
            status, body = call(
                "POST",
                f"{write_url}/api/transfers",
                token,
                {"from_account": account, "to_account": target, "amount": amount},
            )
            if status == 201:
                versions[account] = body["from_account"]["version"]
                versions[target] = body["to_account"]["version"]
        outcomes[status] = outcomes.get(status, 0) + 1
        sent += 1
    elapsed = time.monotonic() - started

    last = ids[-1]
    status, body = call("GET", f"{read_url}/api/accounts/{last}?min_version={versions[last]}&wait_ms=10000")
    print(f"{sent} commands in {elapsed:.1f} s ({sent / max(elapsed, 1e-9):.0f}/s), statuses {outcomes}")
    print(f"read side for {last}: {status}, version {body.get('version')} (wanted {versions[last]})")
    return 0 if status == 200 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-url", default="http://localhost:8001")
    parser.add_argument("--read-url", default="http://localhost:8002")
    parser.add_argument("--token", default="dev-token", help="a token of CQRS_API_TOKENS")
    parser.add_argument("--seconds", type=float, default=30.0, help=f"at most {MAX_SECONDS}")
    parser.add_argument("--max-requests", type=int, default=20_000)
    parser.add_argument("--accounts", type=int, default=20)
    args = parser.parse_args(argv)
    seconds = min(args.seconds, MAX_SECONDS)
    return run(
        args.write_url.rstrip("/"),
        args.read_url.rstrip("/"),
        args.token,
        seconds,
        args.max_requests,
        args.accounts,
    )


if __name__ == "__main__":
    sys.exit(main())
