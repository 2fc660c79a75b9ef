"""A transfer between two accounts: the rules that involve both sides, then each side's own rules.

Both accounts are checked before either changes, so a refused transfer leaves both untouched.
"""

from __future__ import annotations

from uuid import UUID

from write_service.ledger.domain.account import Account
from write_service.ledger.domain.errors import CurrencyMismatch, SelfTransfer
from write_service.ledger.domain.events import DomainEvent
from write_service.ledger.domain.money import parse_amount


def transfer(
    *, source: Account, target: Account, amount: object, transfer_id: UUID
) -> tuple[list[DomainEvent], list[DomainEvent]]:
    """Moves `amount` from `source` to `target`; returns (source's events, target's events)."""
    cents = parse_amount(amount)
    if source.id == target.id:
        raise SelfTransfer(source.id)
    source.ensure_open()
    target.ensure_open()
    if source.currency != target.currency:
        raise CurrencyMismatch(source.currency, target.currency)
    debited = source.send_transfer(transfer_id=transfer_id, to_account=target.id, amount=cents)
    credited = target.receive_transfer(transfer_id=transfer_id, from_account=source.id, amount=cents)
    return debited, credited
