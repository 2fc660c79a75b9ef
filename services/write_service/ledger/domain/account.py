"""The Account aggregate: the only place that decides what may happen to an account.

A command method checks the rules against the current state, raises a `DomainError` if one is broken, and
otherwise applies and returns the events recording the change. State changes only through `_apply`, so the
state reached by a command equals the state `from_events` folds from the stored history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from uuid import UUID

from write_service.ledger.domain.currencies import DEFAULT_CURRENCY, ISO_4217
from write_service.ledger.domain.errors import (
    AccountIsClosed,
    InsufficientFunds,
    InvalidCurrency,
    InvalidOwner,
    InvalidReference,
    NonZeroBalance,
    VersionMismatch,
)
from write_service.ledger.domain.events import (
    AccountClosed,
    AccountOpened,
    DomainEvent,
    MoneyDeposited,
    MoneyWithdrawn,
    TransferCredited,
    TransferDebited,
)
from write_service.ledger.domain.money import ZERO, parse_amount

OWNER_MAX_LENGTH = 100
REFERENCE_MAX_LENGTH = 140


class AccountStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


@dataclass(slots=True)
class Account:
    id: UUID
    owner: str
    currency: str
    balance: Decimal = ZERO
    status: AccountStatus = AccountStatus.OPEN
    # The version of the last applied event; 0 before the account is opened.
    version: int = 0

    # --- creation and replay -------------------------------------------------------------------------

    @classmethod
    def open(
        cls, *, account_id: UUID, owner: object, currency: object = DEFAULT_CURRENCY
    ) -> tuple[Account, list[DomainEvent]]:
        opened = AccountOpened(owner=validate_owner(owner), currency=validate_currency(currency))
        account = cls(id=account_id, owner="", currency="")
        account._apply(opened)
        return account, [opened]

    @classmethod
    def from_events(cls, account_id: UUID, history: Iterable[DomainEvent]) -> Account:
        """The state a history (oldest first, starting with `AccountOpened`) leads to."""
        account = cls(id=account_id, owner="", currency="")
        for event in history:
            if (account.version == 0) != isinstance(event, AccountOpened):
                raise ValueError(f"history of {account_id} must start with exactly one AccountOpened")
            account._apply(event)
        if account.version == 0:
            raise ValueError(f"history of {account_id} is empty")
        return account

    # --- commands ------------------------------------------------------------------------------------

    def check_version(self, expected: int | None) -> None:
        """Optimistic concurrency: `expected` (from If-Match) must be the current version, if given."""
        if expected is not None and expected != self.version:
            raise VersionMismatch(self.id, expected, self.version)

    def deposit(self, amount: object, reference: object = None) -> list[DomainEvent]:
        cents = parse_amount(amount)
        reference = validate_reference(reference)
        self.ensure_open()
        return self._record(MoneyDeposited(amount=cents, reference=reference))

    def withdraw(self, amount: object) -> list[DomainEvent]:
        cents = parse_amount(amount)
        self.ensure_open()
        self._ensure_funds(cents)
        return self._record(MoneyWithdrawn(amount=cents))

    def close(self) -> list[DomainEvent]:
        self.ensure_open()
        if self.balance != ZERO:
            raise NonZeroBalance(self.id, self.balance)
        return self._record(AccountClosed())

    def send_transfer(self, *, transfer_id: UUID, to_account: UUID, amount: object) -> list[DomainEvent]:
        """The source side of a transfer; `domain.transfer` checks what involves both accounts."""
        cents = parse_amount(amount)
        self.ensure_open()
        self._ensure_funds(cents)
        return self._record(TransferDebited(transfer_id=transfer_id, to_account=to_account, amount=cents))

    def receive_transfer(self, *, transfer_id: UUID, from_account: UUID, amount: object) -> list[DomainEvent]:
        cents = parse_amount(amount)
        self.ensure_open()
        credited = TransferCredited(transfer_id=transfer_id, from_account=from_account, amount=cents)
        return self._record(credited)

    # --- rules ---------------------------------------------------------------------------------------

    def ensure_open(self) -> None:
        if self.status is AccountStatus.CLOSED:
            raise AccountIsClosed(self.id)

    def _ensure_funds(self, amount: Decimal) -> None:
        if self.balance < amount:
            raise InsufficientFunds(self.id, self.balance, amount)

    # --- state changes -------------------------------------------------------------------------------

    def _record(self, event: DomainEvent) -> list[DomainEvent]:
        self._apply(event)
        return [event]

    def _apply(self, event: DomainEvent) -> None:
        match event:
            case AccountOpened(owner=owner, currency=currency):
                self.owner, self.currency = owner, currency
                self.balance, self.status = ZERO, AccountStatus.OPEN
            case MoneyDeposited(amount=amount) | TransferCredited(amount=amount):
                self.balance += amount
            case MoneyWithdrawn(amount=amount) | TransferDebited(amount=amount):
                self.balance -= amount
            case AccountClosed():
                self.status = AccountStatus.CLOSED
            case _:
                raise TypeError(f"unknown event {event!r}")
        self.version += 1


def validate_owner(owner: object) -> str:
    """1..100 characters once surrounding whitespace is dropped, all of them storable text: no NUL (which
    PostgreSQL's text cannot hold) and no lone surrogate (which UTF-8 cannot encode); JSON can carry both."""
    if not isinstance(owner, str):
        raise InvalidOwner("Owner must be a string.")
    owner = owner.strip()
    if not owner:
        raise InvalidOwner("Owner must not be blank.")
    if len(owner) > OWNER_MAX_LENGTH:
        raise InvalidOwner(f"Owner must be at most {OWNER_MAX_LENGTH} characters.")
    if not _storable_text(owner):
        raise InvalidOwner("Owner must not contain NUL characters or lone surrogates.")
    return owner


def validate_reference(reference: object) -> str | None:
    """None, or 1..140 characters of storable text, kept exactly as given (a reference is copied, not
    typed, so its spaces are the depositor's)."""
    if reference is None:
        return None
    if not isinstance(reference, str):
        raise InvalidReference("Reference must be a string or null.")
    if not 1 <= len(reference) <= REFERENCE_MAX_LENGTH:
        raise InvalidReference(f"Reference must be 1 to {REFERENCE_MAX_LENGTH} characters.")
    if not _storable_text(reference):
        raise InvalidReference("Reference must not contain NUL characters or lone surrogates.")
    return reference


def _storable_text(text: str) -> bool:
    return "\x00" not in text and not any("\ud800" <= character <= "\udfff" for character in text)


def validate_currency(currency: object) -> str:
    if not isinstance(currency, str) or currency not in ISO_4217:
        raise InvalidCurrency(f"Currency must be an ISO 4217 code in capitals, such as {DEFAULT_CURRENCY}.")
    return currency
