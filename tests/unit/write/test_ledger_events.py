"""Domain events match the contract's types and data (CONTRACT.md, "Events") and decode back unchanged."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from cqrs_common.events import DATA_FIELDS
from write_service.ledger.domain import (
    AccountClosed,
    AccountOpened,
    DomainEvent,
    MoneyDeposited,
    MoneyWithdrawn,
    TransferCredited,
    TransferDebited,
    event_from_stored,
)

EXAMPLES: list[DomainEvent] = [
    AccountOpened(owner="alice", currency="EUR"),
    MoneyDeposited(amount=Decimal("10.00"), reference="INV-1"),
    MoneyWithdrawn(amount=Decimal("0.50")),
    TransferDebited(transfer_id=uuid.uuid4(), to_account=uuid.uuid4(), amount=Decimal("3.10")),
    TransferCredited(transfer_id=uuid.uuid4(), from_account=uuid.uuid4(), amount=Decimal("3.10")),
    AccountClosed(),
]


def test_there_is_one_domain_event_per_contract_event_type() -> None:
    assert {event.type for event in EXAMPLES} == set(DATA_FIELDS)


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: e.type)
def test_event_data_has_exactly_the_contract_fields(event: DomainEvent) -> None:
    assert set(event.data()) == DATA_FIELDS[event.type]
    assert all(isinstance(value, str) for value in event.data().values())


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: e.type)
def test_stored_data_decodes_to_the_same_event(event: DomainEvent) -> None:
    assert event_from_stored(event.type, event.data()) == event


def test_amounts_are_written_as_two_decimal_strings() -> None:
    assert MoneyDeposited(amount=Decimal("7.5")).data() == {"amount": "7.50", "reference": None}


def test_a_deposit_without_a_reference_writes_a_null_one() -> None:
    assert MoneyDeposited(amount=Decimal("1.00")).data()["reference"] is None
    assert event_from_stored("MoneyDeposited", {"amount": "1.00", "reference": None}) == MoneyDeposited(
        amount=Decimal("1.00")
    )


def test_an_unknown_stored_type_is_refused() -> None:
    with pytest.raises(KeyError):
        event_from_stored("MoneyPrinted", {})
