"""A producer process: commands through the write side's service layer as fast as one process goes.

`python -m bench.producer --seconds 20` (or `--events 7500`) with WRITE_DATABASE_URL set. It opens its own
accounts, prints `ready`, waits for a line on stdin (so that every producer starts at once), then runs a
mix of commands on its accounts: deposits mostly, some withdrawals and transfers (two events each). Each
command is its own transaction, as behind the REST API. At the end it prints one JSON line with its counts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from decimal import Decimal

OPENING_DEPOSIT = Decimal("1000000.00")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.0, help="run this long (0: until --events)")
    parser.add_argument("--events", type=int, default=0, help="stop after this many events (0: no limit)")
    parser.add_argument("--accounts", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    if not options.seconds and not options.events:
        parser.error("give --seconds or --events")

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "write_service.settings")
    import django

    django.setup()
    from write_service.ledger import services
    from write_service.ledger.domain import DomainError

    rng = random.Random(options.seed)
    tag = f"bench-producer-{options.seed}"
    accounts = []
    for _ in range(options.accounts):
        account = services.account_open(owner=tag, correlation_id=tag)
        services.account_deposit(
            account_id=account.id, amount=OPENING_DEPOSIT, expected_version=None, correlation_id=tag
        )
        accounts.append(account.id)

    print("ready", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    deadline = started + options.seconds if options.seconds else float("inf")
    commands = events = rejected = 0
    while time.monotonic() < deadline and not (options.events and events >= options.events):
        correlation_id = f"{tag}-{commands}"
        amount = Decimal(rng.randint(1, 10_000)) / 100
        roll = rng.random()
        try:
            if roll < 0.8:
                services.account_deposit(
                    account_id=rng.choice(accounts),
                    amount=amount,
                    expected_version=None,
                    correlation_id=correlation_id,
                )
                events += 1
            elif roll < 0.9:
                services.account_withdraw(
                    account_id=rng.choice(accounts),
                    amount=amount,
                    expected_version=None,
                    correlation_id=correlation_id,
                )
                events += 1
            else:
                source, target = rng.sample(accounts, 2)
                services.transfer_create(
                    from_account=source,
                    to_account=target,
                    amount=amount,
                    expected_version=None,
                    correlation_id=correlation_id,
                )
                events += 2
        except DomainError:
            rejected += 1
        commands += 1
    elapsed = time.monotonic() - started
    print(json.dumps({"commands": commands, "events": events, "rejected": rejected, "seconds": elapsed}))


if __name__ == "__main__":
    main()
