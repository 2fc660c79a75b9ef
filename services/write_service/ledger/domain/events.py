"""What happened to an account, in the past tense: one dataclass per event type of CONTRACT.md.

`data()` gives the event's `data` object exactly as the contract spells it (amounts and ids as strings);
`event_from_stored` is its inverse, used to fold a stored history.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

from write_service.ledger.domain.money import format_amount


@dataclass(frozen=True, slots=True)
class DomainEvent:
    type: ClassVar[str]

    def data(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class AccountOpened(DomainEvent):
    type: ClassVar[str] = "AccountOpened"
    owner: str
    currency: str

    def data(self) -> dict[str, Any]:
        return {"owner": self.owner, "currency": self.currency}


@dataclass(frozen=True, slots=True)
class MoneyDeposited(DomainEvent):
    """`reference`: the depositor's (a bank transfer's, say), or None; schema version 2 added it."""

    type: ClassVar[str] = "MoneyDeposited"
    amount: Decimal
    reference: str | None = None

    def data(self) -> dict[str, Any]:
        return {"amount": format_amount(self.amount), "reference": self.reference}


@dataclass(frozen=True, slots=True)
class MoneyWithdrawn(DomainEvent):
    type: ClassVar[str] = "MoneyWithdrawn"
    amount: Decimal

    def data(self) -> dict[str, Any]:
        return {"amount": format_amount(self.amount)}


@dataclass(frozen=True, slots=True)
class TransferDebited(DomainEvent):
    """On the source account."""

    type: ClassVar[str] = "TransferDebited"
    transfer_id: UUID
    to_account: UUID
    amount: Decimal

    def data(self) -> dict[str, Any]:
        return {
            "transfer_id": str(self.transfer_id),
            "to_account": str(self.to_account),
            "amount": format_amount(self.amount),
        }


@dataclass(frozen=True, slots=True)
class TransferCredited(DomainEvent):
    """On the target account."""

    type: ClassVar[str] = "TransferCredited"
    transfer_id: UUID
    from_account: UUID
    amount: Decimal

    def data(self) -> dict[str, Any]:
        return {
            "transfer_id": str(self.transfer_id),
            "from_account": str(self.from_account),
            "amount": format_amount(self.amount),
        }


@dataclass(frozen=True, slots=True)
class AccountClosed(DomainEvent):
    type: ClassVar[str] = "AccountClosed"

    def data(self) -> dict[str, Any]:
        return {}


def event_from_stored(event_type: str, data: dict[str, Any]) -> DomainEvent:
    """The domain event a stored `(type, data)` pair records, `data` at the type's current schema version
    (the caller upcasts what was stored with an older one); `KeyError` for an unknown type."""
    return _DECODERS[event_type](data)


_DECODERS = {
    "AccountOpened": lambda d: AccountOpened(owner=d["owner"], currency=d["currency"]),
    "MoneyDeposited": lambda d: MoneyDeposited(amount=Decimal(d["amount"]), reference=d["reference"]),
    "MoneyWithdrawn": lambda d: MoneyWithdrawn(amount=Decimal(d["amount"])),
    "TransferDebited": lambda d: TransferDebited(
        transfer_id=UUID(d["transfer_id"]), to_account=UUID(d["to_account"]), amount=Decimal(d["amount"])
    ),
    "TransferCredited": lambda d: TransferCredited(
        transfer_id=UUID(d["transfer_id"]), from_account=UUID(d["from_account"]), amount=Decimal(d["amount"])
    ),
    "AccountClosed": lambda d: AccountClosed(),
}
