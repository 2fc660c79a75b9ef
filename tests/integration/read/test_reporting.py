"""The reporting subscriber's pieces against the real read DB and broker: counting each event once, its own
queues beside the projector's (fan-out, its own dead letters), and its broker user's least privilege."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.test import Client

from cqrs_common.messaging import BrokerError, Consumer, reporting_queues
from devkit.messages import message
from devkit.polling import eventually
from devkit.system_processes import reporting_broker_url
from read_service.reporting.counting import events_count
from read_service.reporting.models import DailyTotal, SubscriptionState
from read_service.reporting.state import state_start
from read_service.reporting.subscriber import ReportingSubscriber, SubscriberSettings
from tests.integration.read.conftest import AccountHistory, transfer

pytestmark = pytest.mark.django_db(transaction=True)


def _totals(subscription: str) -> dict[tuple[str, str], tuple]:
    return {
        (str(row.day), row.currency): (
            row.accounts_opened,
            row.deposits,
            row.deposited,
            row.withdrawals,
            row.withdrawn,
            row.transfers,
            row.transferred,
            row.largest_movement,
            row.events,
        )
        for row in DailyTotal.objects.filter(subscription=subscription)
    }


def test_each_event_is_counted_once_whichever_path_brings_it_again() -> None:
    subscription = f"test-{uuid.uuid4().hex[:8]}"
    state_start(subscription, queue_was_new=True)
    alice, bob, carol = AccountHistory(), AccountHistory(owner="bob"), AccountHistory("carol", "USD")
    events = [alice.opened(), bob.opened(), carol.opened(), alice.deposited("100.00")]
    events += [alice.withdrawn("30.00"), *transfer(alice, bob, "50.00"), carol.deposited("7.00")]

    first = events_count(subscription, events[:5], path="history", replica_seq=5)
    second = events_count(subscription, [*events[3:], events[-1]], path="live")  # overlap and a repeat

    assert len(first.counted) == 5 and not first.duplicates
    assert [e.event_id for e in second.counted] == [e.event_id for e in events[5:]]
    assert [e.event_id for e in second.duplicates] == [e.event_id for e in events[3:5]]
    day = str(alice.clock.date())
    assert _totals(subscription) == {
        (day, "EUR"): (
            2,
            1,
            Decimal("100.00"),
            1,
            Decimal("30.00"),
            1,
            Decimal("50.00"),
            Decimal("100.00"),
            6,
        ),
        (day, "USD"): (1, 1, Decimal("7.00"), 0, Decimal(0), 0, Decimal(0), Decimal("7.00"), 2),
    }
    state = SubscriptionState.objects.get(subscription=subscription)
    assert (state.replica_seq, state.history_events, state.live_events, state.live_duplicates) == (5, 5, 3, 2)


def test_an_event_of_an_account_nobody_knows_is_not_counted() -> None:
    subscription = f"test-{uuid.uuid4().hex[:8]}"
    stranger = AccountHistory()
    stranger.opened()  # never counted, and not in the log either
    result = events_count(subscription, [stranger.deposited("5.00")], path="live")
    assert len(result.unknown_account) == 1 and not result.counted and not _totals(subscription)


@pytest.fixture
def reporting_url(broker_url: str) -> str:
    return reporting_broker_url(broker_url)


@pytest.fixture
def subscription(reporting_url: str) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    with Consumer(reporting_url, connection_name="test-reporting-cleanup", declare=False) as broker:
        broker.delete_subscriber(reporting_queues(name))


def test_both_queues_receive_every_event_and_refusals_stay_in_its_own_dead_letter_queue(
    broker: Consumer, publish, publish_raw, reporting_url: str, subscription: str
) -> None:
    queues = reporting_queues(subscription)
    consumer = Consumer(reporting_url, connection_name="test-reporting", subscriber=queues)
    assert consumer.queue_was_new
    state_start(subscription, queue_was_new=True)
    alice = AccountHistory()
    events = [alice.opened(), *(alice.deposited(f"{n}.00") for n in range(1, 11))]
    publish(*events)
    publish_raw(b"not json at all", "account.MoneyDeposited")
    try:
        assert Consumer(reporting_url, connection_name="again", subscriber=queues).queue_was_new is False
        eventually(lambda: broker.backlog() == 12, timeout=10, what="projector queue")
        eventually(lambda: consumer.message_count(queues.queue) == 12, timeout=10, what="reporting queue")
        subscriber = ReportingSubscriber(lambda: consumer, SubscriberSettings(subscription))
        counted = subscriber.handle(consumer, consumer.receive(100, timeout=5))
        assert sorted(e.aggregate_version for e in counted.counted) == list(range(1, 12))
        eventually(lambda: consumer.message_count(queues.dead_letter_queue) == 1, timeout=10, what="its DLQ")
        dead = consumer.get(queues.dead_letter_queue)
        assert dead is not None and dead.body == b"not json at all"
        assert consumer.message_count(queues.queue) == 0
        assert broker.backlog() == 12  # the projector's copies are untouched
    finally:
        consumer.close()


def test_its_broker_user_can_neither_read_the_projectors_queue_nor_publish_events(
    broker: Consumer, reporting_url: str
) -> None:
    with pytest.raises(BrokerError):
        Consumer(reporting_url, connection_name="test-intruder", declare=False).receive(1, 0.5)
    stranger = Consumer(reporting_url, connection_name="test-intruder-publish", declare=False)
    try:
        with pytest.raises(BrokerError):
            stranger.republish(message(b"{}", "MoneyDeposited", str(uuid.uuid4())))
    finally:
        stranger.close()


def test_the_reports_api_serves_the_default_subscription_and_refuses_bad_parameters(client: Client) -> None:
    SubscriptionState.objects.filter(subscription="daily-totals").delete()
    DailyTotal.objects.filter(subscription="daily-totals").delete()
    assert client.get("/api/reports/subscription").status_code == 404
    state_start("daily-totals", queue_was_new=True)
    eur, usd = AccountHistory(), AccountHistory(currency="USD")
    events_count("daily-totals", [eur.opened(), usd.opened(), eur.deposited("12.50")], path="history")

    subscription = client.get("/api/reports/subscription").json()
    assert (subscription["phase"], subscription["history_events"]) == ("catching_up", 3)
    daily = client.get("/api/reports/daily", {"currency": "EUR"}).json()
    assert [(row["currency"], row["deposited"], row["events"]) for row in daily["results"]] == [
        ("EUR", "12.50", 2)
    ]
    day = daily["results"][0]["day"]
    assert client.get("/api/reports/daily", {"since": day, "until": day}).json()["count"] == 2
    for bad in ({"currency": "eur"}, {"since": "yesterday"}, {"currency": ""}):
        response = client.get("/api/reports/daily", bad)
        assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"
