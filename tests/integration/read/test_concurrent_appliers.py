"""Several appliers at once (projectors on their partitions, each one's replication fallback) never deadlock.

Every apply transaction writes rows all of them share: the batch's progress (`projector_state`) and the
currency totals. Taken in whatever order each statement happens to take them, two transactions can each hold
one and wait for the other, and PostgreSQL breaks the cycle after `deadlock_timeout` (1 s) by failing one:
a batch retried a second later, the tail of several projectors' lag. Here appliers on disjoint accounts (as
partitions give them) apply small mixed batches across currencies at once: none fails, and the totals are
exact.
"""

from __future__ import annotations

import random
import threading
from decimal import Decimal

import pytest
from django.db import OperationalError, connection

from read_service.projections.apply import BROKER, REPLICATION, apply_events
from read_service.projections.models import CurrencyTotal
from tests.integration.read.conftest import AccountHistory

pytestmark = pytest.mark.django_db(transaction=True)

APPLIERS = 4
BATCHES = 60
CURRENCIES = ("EUR", "USD", "SEK")


def test_concurrent_appliers_on_disjoint_accounts_never_deadlock() -> None:
    before = _totals()
    accounts = [[AccountHistory(f"applier-{n}", c) for c in CURRENCIES] for n in range(APPLIERS)]
    # Opened first, by one applier: the concurrent part is the money.
    apply_events([history.opened() for own in accounts for history in own], path=BROKER)
    failures: list[str] = []
    deposited = {currency: Decimal(0) for currency in CURRENCIES}
    lock = threading.Lock()
    start = threading.Barrier(APPLIERS)

    def applier(n: int) -> None:
        shuffle = random.Random(n)
        start.wait()
        try:
            for i in range(BATCHES):
                own = accounts[n][: len(CURRENCIES)]  # the three it started with
                shuffle.shuffle(own)  # each batch touches the currencies in another order
                batch = [history.deposited("1.00") for history in own[: 1 + i % len(own)]]
                # An account opened and paid into in the middle of some batches, as traffic has them: its
                # opening ends a run of money events, so the batch writes the totals more than once.
                if i % 2:
                    newcomer = AccountHistory(f"applier-{n}-{i}", shuffle.choice(CURRENCIES))
                    accounts[n].append(newcomer)
                    at = shuffle.randrange(len(batch) + 1)
                    batch[at:at] = [newcomer.opened(), newcomer.deposited("1.00")]
                try:
                    apply_events(batch, path=BROKER if n % 2 == 0 else REPLICATION)
                except OperationalError as exc:
                    failures.append(str(exc).splitlines()[0])
                    return
                with lock:
                    for event in batch:
                        if event.type == "MoneyDeposited":
                            currency = next(
                                h.currency for h in accounts[n] if h.account_id == event.aggregate_id
                            )
                            deposited[currency] += 1
        finally:
            connection.close()  # the thread's own connection

    threads = [threading.Thread(target=applier, args=(n,)) for n in range(APPLIERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    after = _totals()
    assert {c: after[c] - before.get(c, 0) for c in CURRENCIES} == deposited
    assert sum(deposited.values()) == APPLIERS * sum(1 + i % len(CURRENCIES) + i % 2 for i in range(BATCHES))


def _totals() -> dict[str, Decimal]:
    return {t.currency: t.total_balance for t in CurrencyTotal.objects.filter(currency__in=CURRENCIES)}
