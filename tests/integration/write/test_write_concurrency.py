"""Commands racing on the same accounts through real PostgreSQL transactions (threads, committed data):
no lost update, contiguous versions, money conserved, and the stored state equal to the fold of the events.
Idempotency keys hold under the same race."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from write_service.ledger import models, services
from write_service.ledger.domain import Account

pytestmark = pytest.mark.django_db(transaction=True)


def race(make_client: Callable[[], Any], requests: list[Callable[[Any], Any]]) -> list[Any]:
    """Runs each request on its own thread, client and database connection, all released at once."""
    barrier = threading.Barrier(len(requests))
    results: list[Any] = [None] * len(requests)

    def run(index: int) -> None:
        client = make_client()
        try:
            barrier.wait(timeout=30)
            results[index] = requests[index](client)
        except Exception as exc:  # reported below, with the others
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(isinstance(result, Exception) for result in results), results
    return results


def post(path: str, body: dict, **headers: str) -> Callable[[Any], Any]:
    return lambda client: client.post(path, data=body, format="json", **headers)


def test_fifty_concurrent_commands_lose_nothing_and_conserve_money(ledger, make_client) -> None:
    accounts = [ledger.open(owner=f"owner-{i}", balance="100.00") for i in range(3)]
    moved_in = Decimal("300.00")
    rng = random.Random(7)
    operations: list[tuple[str, Any, Decimal]] = []
    requests = []
    for _ in range(50):
        kind = rng.choice(["deposit", "withdraw", "transfer"])
        amount = Decimal(rng.randint(1, 6000)) / 100
        if kind == "transfer":
            # Both directions between the same accounts: the fixed lock order must prevent deadlocks.
            source, target = rng.sample(accounts, 2)
            operations.append((kind, (source, target), amount))
            body = {"from_account": str(source), "to_account": str(target), "amount": str(amount)}
            requests.append(post("/api/transfers", body))
        else:
            account_id = rng.choice(accounts)
            operations.append((kind, account_id, amount))
            requests.append(post(f"/api/accounts/{account_id}/{kind}", {"amount": str(amount)}))

    responses = race(make_client, requests)

    statuses = Counter(response.status_code for response in responses)
    assert set(statuses) <= {200, 201, 409}, statuses
    assert statuses[409] == sum(
        1 for r in responses if r.status_code == 409 and r.json()["type"].endswith("/insufficient-funds")
    )
    expected_total = moved_in
    claimed_versions: dict[uuid.UUID, list[int]] = {a: [1, 2] for a in accounts}
    for (kind, target, amount), response in zip(operations, responses, strict=True):
        if response.status_code == 409:
            continue
        body = response.json()
        if kind == "deposit":
            expected_total += amount
        elif kind == "withdraw":
            expected_total -= amount
        if kind == "transfer":
            for side in ("from_account", "to_account"):
                claimed_versions[uuid.UUID(body[side]["account_id"])].append(body[side]["version"])
        else:
            claimed_versions[target].append(body["version"])

    rows = {row.id: row for row in models.Account.objects.filter(pk__in=accounts)}
    assert sum(row.balance for row in rows.values()) == expected_total
    for account_id, row in rows.items():
        stored = list(models.Event.objects.filter(aggregate_id=account_id).order_by("aggregate_version"))
        # Versions are contiguous, each claimed by exactly one successful command: no lost update.
        assert [event.aggregate_version for event in stored] == list(range(1, row.version + 1))
        assert sorted(claimed_versions[account_id]) == list(range(1, row.version + 1))
        assert row.balance >= 0
        folded = Account.from_events(account_id, services.account_history(account_id))
        assert folded == services.to_domain(row)


def test_the_same_idempotency_key_sent_at_once_has_one_effect_and_one_answer(ledger, make_client) -> None:
    account_id = ledger.open()
    path = f"/api/accounts/{account_id}/deposit"

    responses = race(make_client, [post(path, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="same-moment")] * 5)

    assert {response.status_code for response in responses} == {200}
    assert len({response.content for response in responses}) == 1
    assert sum(1 for r in responses if r.has_header("Idempotent-Replayed")) == 4
    deposits = models.Event.objects.filter(aggregate_id=account_id, event_type="MoneyDeposited")
    assert deposits.count() == 1
    assert models.Account.objects.get(pk=account_id).balance == Decimal("10.00")


def test_the_same_key_with_different_bodies_at_once_has_one_effect(ledger, make_client) -> None:
    account_id = ledger.open()
    path = f"/api/accounts/{account_id}/deposit"

    responses = race(
        make_client,
        [
            post(path, {"amount": "1.00"}, HTTP_IDEMPOTENCY_KEY="contested"),
            post(path, {"amount": "2.00"}, HTTP_IDEMPOTENCY_KEY="contested"),
        ],
    )

    assert sorted(response.status_code for response in responses) == [200, 422]
    assert models.Event.objects.filter(aggregate_id=account_id, event_type="MoneyDeposited").count() == 1


def test_an_expired_key_sent_at_once_is_taken_over_once(ledger, make_client, settings) -> None:
    settings.IDEMPOTENCY_KEY_TTL_SECONDS = 60
    account_id = ledger.open()
    path = f"/api/accounts/{account_id}/deposit"
    ledger.post(path, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="expired-at-once")
    models.IdempotencyKey.objects.filter(key="expired-at-once").update(
        created_at=timezone.now() - timedelta(seconds=61)
    )

    responses = race(
        make_client, [post(path, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="expired-at-once")] * 5
    )

    assert {response.status_code for response in responses} == {200}
    assert len({response.content for response in responses}) == 1
    assert sum(1 for r in responses if r.has_header("Idempotent-Replayed")) == 4
    assert models.Account.objects.get(pk=account_id).balance == Decimal("20.00")
