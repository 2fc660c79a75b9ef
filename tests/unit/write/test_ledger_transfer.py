"""Transfers (ledger.domain.transfer): the rules over both accounts; a refused transfer changes neither."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from write_service.ledger.domain import (
    Account,
    AccountIsClosed,
    CurrencyMismatch,
    DomainError,
    InsufficientFunds,
    InvalidAmount,
    SelfTransfer,
    TransferCredited,
    TransferDebited,
    transfer,
)


def opened(currency: str = "EUR", balance: str | None = None) -> Account:
    account, _ = Account.open(account_id=uuid.uuid4(), owner="owner", currency=currency)
    if balance is not None:
        account.deposit(balance)
    return account


def test_a_transfer_debits_the_source_and_credits_the_target() -> None:
    source, target = opened(balance="50.00"), opened()
    transfer_id = uuid.uuid4()

    debited, credited = transfer(source=source, target=target, amount="20.00", transfer_id=transfer_id)

    assert debited == [
        TransferDebited(transfer_id=transfer_id, to_account=target.id, amount=Decimal("20.00"))
    ]
    assert credited == [
        TransferCredited(transfer_id=transfer_id, from_account=source.id, amount=Decimal("20.00"))
    ]
    assert debited[0].data() == {
        "transfer_id": str(transfer_id),
        "to_account": str(target.id),
        "amount": "20.00",
    }
    assert credited[0].data() == {
        "transfer_id": str(transfer_id),
        "from_account": str(source.id),
        "amount": "20.00",
    }
    assert (source.balance, source.version) == (Decimal("30.00"), 3)
    assert (target.balance, target.version) == (Decimal("20.00"), 2)


def _closed(balance: str | None = None) -> Account:
    account = opened()
    account.close()
    return account


@pytest.mark.parametrize(
    ("make_pair", "amount", "error"),
    [
        (lambda: (opened(balance="5.00"), opened()), "5.01", InsufficientFunds),
        (lambda: (opened(balance="5.00"), opened(currency="USD")), "1.00", CurrencyMismatch),
        (lambda: (_closed(), opened()), "1.00", AccountIsClosed),
        (lambda: (opened(balance="5.00"), _closed()), "1.00", AccountIsClosed),
        (lambda: (opened(balance="5.00"), opened()), "0", InvalidAmount),
        (lambda: (opened(balance="5.00"), opened()), "0.005", InvalidAmount),
    ],
    ids=["insufficient_funds", "currency_mismatch", "source_closed", "target_closed", "zero", "3_decimals"],
)
def test_a_refused_transfer_changes_neither_account(make_pair, amount: str, error: type[DomainError]) -> None:
    source, target = make_pair()
    before = (source.balance, source.version, target.balance, target.version)

    with pytest.raises(error):
        transfer(source=source, target=target, amount=amount, transfer_id=uuid.uuid4())

    assert (source.balance, source.version, target.balance, target.version) == before


def test_an_account_cannot_transfer_to_itself() -> None:
    account = opened(balance="5.00")
    with pytest.raises(SelfTransfer) as caught:
        transfer(source=account, target=account, amount="1.00", transfer_id=uuid.uuid4())
    assert caught.value.reason == "transfer_to_itself"
    assert (account.balance, account.version) == (Decimal("5.00"), 2)
