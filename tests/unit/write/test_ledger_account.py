"""The Account aggregate (ledger.domain.account): every rule, every event, and folding a history."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from write_service.ledger.domain import (
    Account,
    AccountClosed,
    AccountIsClosed,
    AccountOpened,
    AccountStatus,
    InsufficientFunds,
    InvalidAmount,
    InvalidCurrency,
    InvalidOwner,
    InvalidReference,
    MoneyDeposited,
    MoneyWithdrawn,
    NonZeroBalance,
    VersionMismatch,
)


def opened(owner: str = "alice", currency: str = "EUR", balance: str | None = None) -> Account:
    account, _ = Account.open(account_id=uuid.uuid4(), owner=owner, currency=currency)
    if balance is not None:
        account.deposit(balance)
    return account


def test_opening_records_owner_and_currency_at_version_1() -> None:
    account_id = uuid.uuid4()
    account, events = Account.open(account_id=account_id, owner="alice", currency="USD")

    assert events == [AccountOpened(owner="alice", currency="USD")]
    assert events[0].data() == {"owner": "alice", "currency": "USD"}
    assert (account.id, account.owner, account.currency) == (account_id, "alice", "USD")
    assert (account.balance, account.status, account.version) == (Decimal("0.00"), AccountStatus.OPEN, 1)


def test_currency_defaults_to_euro() -> None:
    account, _ = Account.open(account_id=uuid.uuid4(), owner="alice")
    assert account.currency == "EUR"


def test_owner_is_trimmed_and_may_be_100_characters() -> None:
    assert opened(owner="  bob ").owner == "bob"
    assert opened(owner="x" * 100).owner == "x" * 100


@pytest.mark.parametrize("owner", ["", "   ", "x" * 101, None, 42, ["alice"], "a\x00b", "x\ud800y", "\udfff"])
def test_owner_must_be_1_to_100_characters_of_text(owner: object) -> None:
    with pytest.raises(InvalidOwner) as caught:
        Account.open(account_id=uuid.uuid4(), owner=owner)
    assert caught.value.field == "owner"


@pytest.mark.parametrize("currency", ["eur", "EURO", "EU", "XYZ", "XXX", "", None, 978])
def test_currency_must_be_a_real_iso_4217_code_in_capitals(currency: object) -> None:
    with pytest.raises(InvalidCurrency) as caught:
        Account.open(account_id=uuid.uuid4(), owner="alice", currency=currency)
    assert caught.value.field == "currency"


@pytest.mark.parametrize("currency", ["EUR", "USD", "JPY", "CHF", "GBP", "XAU"])
def test_real_currencies_are_accepted(currency: str) -> None:
    assert opened(currency=currency).currency == currency


def test_deposit_adds_and_records_the_amount() -> None:
    account = opened()
    events = account.deposit("10.50")

    assert events == [MoneyDeposited(amount=Decimal("10.50"))]
    assert events[0].data() == {"amount": "10.50", "reference": None}
    assert (account.balance, account.version) == (Decimal("10.50"), 2)


@pytest.mark.parametrize("reference", ["INV-2026-0042", " spaced as given ", "x", "x" * 140, "ü€𝄞"])
def test_a_deposit_records_its_reference_as_given(reference: str) -> None:
    events = opened().deposit("1.00", reference)
    assert events == [MoneyDeposited(amount=Decimal("1.00"), reference=reference)]
    assert events[0].data() == {"amount": "1.00", "reference": reference}


@pytest.mark.parametrize("reference", ["", "x" * 141, 42, ["INV"], {"r": 1}, "a\x00b", "x\ud800y", "\udfff"])
def test_a_reference_must_be_null_or_1_to_140_characters_of_text(reference: object) -> None:
    account = opened()
    with pytest.raises(InvalidReference) as caught:
        account.deposit("1.00", reference)
    assert caught.value.field == "reference"
    assert (account.balance, account.version) == (Decimal("0.00"), 1)


def test_withdrawal_subtracts_and_records_the_amount() -> None:
    account = opened(balance="10.00")
    events = account.withdraw("2.25")

    assert events == [MoneyWithdrawn(amount=Decimal("2.25"))]
    assert events[0].data() == {"amount": "2.25"}
    assert (account.balance, account.version) == (Decimal("7.75"), 3)


def test_the_whole_balance_can_be_withdrawn() -> None:
    account = opened(balance="10.00")
    account.withdraw("10.00")
    assert account.balance == Decimal("0.00")


def test_withdrawing_more_than_the_balance_is_refused_and_changes_nothing() -> None:
    account = opened(balance="10.00")
    with pytest.raises(InsufficientFunds) as caught:
        account.withdraw("10.01")
    assert caught.value.reason == "insufficient_funds"
    assert (account.balance, account.version) == (Decimal("10.00"), 2)


@pytest.mark.parametrize("command", ["deposit", "withdraw"])
@pytest.mark.parametrize("amount", ["0", "-1", "0.001", "1000000000.01", "ten"])
def test_invalid_amounts_are_refused_before_anything_changes(command: str, amount: str) -> None:
    account = opened(balance="5.00")
    with pytest.raises(InvalidAmount):
        getattr(account, command)(amount)
    assert (account.balance, account.version) == (Decimal("5.00"), 2)


def test_closing_an_empty_account_records_it() -> None:
    account = opened()
    events = account.close()

    assert events == [AccountClosed()]
    assert events[0].data() == {}
    assert (account.status, account.version) == (AccountStatus.CLOSED, 2)


def test_closing_a_non_zero_balance_is_refused() -> None:
    account = opened(balance="0.01")
    with pytest.raises(NonZeroBalance) as caught:
        account.close()
    assert caught.value.reason == "non_zero_balance"
    assert (account.status, account.version) == (AccountStatus.OPEN, 2)


@pytest.mark.parametrize(
    "command",
    [
        lambda a: a.deposit("1.00"),
        lambda a: a.withdraw("1.00"),
        lambda a: a.close(),
        lambda a: a.send_transfer(transfer_id=uuid.uuid4(), to_account=uuid.uuid4(), amount="1.00"),
        lambda a: a.receive_transfer(transfer_id=uuid.uuid4(), from_account=uuid.uuid4(), amount="1.00"),
    ],
    ids=["deposit", "withdraw", "close", "send_transfer", "receive_transfer"],
)
def test_a_closed_account_refuses_every_command(command) -> None:
    account = opened()
    account.close()
    with pytest.raises(AccountIsClosed) as caught:
        command(account)
    assert caught.value.reason == "account_closed"
    assert account.version == 2


def test_expected_version_must_match_when_given() -> None:
    account = opened(balance="1.00")
    account.check_version(None)
    account.check_version(2)
    with pytest.raises(VersionMismatch) as caught:
        account.check_version(1)
    assert caught.value.actual == 2


def test_from_events_folds_a_history_to_the_state_the_commands_reached() -> None:
    account = opened(owner="carol", currency="CHF")
    history: list = [AccountOpened(owner="carol", currency="CHF")]
    history += account.deposit("100.00")
    history += account.withdraw("30.25")
    history += account.send_transfer(transfer_id=uuid.uuid4(), to_account=uuid.uuid4(), amount="69.75")
    history += account.receive_transfer(transfer_id=uuid.uuid4(), from_account=uuid.uuid4(), amount="5")
    history += account.withdraw("5")
    history += account.close()

    folded = Account.from_events(account.id, history)

    assert folded == account
    assert (folded.balance, folded.status, folded.version) == (Decimal("0.00"), AccountStatus.CLOSED, 7)


@pytest.mark.parametrize(
    "history",
    [
        [],
        [MoneyDeposited(amount=Decimal("1.00"))],
        [AccountOpened(owner="a", currency="EUR"), AccountOpened(owner="a", currency="EUR")],
    ],
    ids=["empty", "no_opening", "opened_twice"],
)
def test_from_events_refuses_a_history_that_does_not_start_with_one_opening(history: list) -> None:
    with pytest.raises(ValueError, match="history"):
        Account.from_events(uuid.uuid4(), history)
