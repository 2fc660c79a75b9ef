"""The ledger's domain model: plain Python, no Django.

`Account` decides: each command method checks the rules, raises a `DomainError` when one is broken, and
otherwise returns the events that record what happened (applying them to itself). `transfer` decides a
transfer between two accounts. `Account.from_events` folds a history back into state.
"""

from write_service.ledger.domain.account import Account, AccountStatus
from write_service.ledger.domain.errors import (
    AccountIsClosed,
    AccountNotFound,
    BusinessRuleViolation,
    CurrencyMismatch,
    DomainError,
    InsufficientFunds,
    InvalidAmount,
    InvalidCurrency,
    InvalidOwner,
    InvalidReference,
    InvalidValue,
    NonZeroBalance,
    SelfTransfer,
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
    event_from_stored,
)
from write_service.ledger.domain.money import format_amount, parse_amount
from write_service.ledger.domain.transfer import transfer

__all__ = [
    "Account",
    "AccountClosed",
    "AccountIsClosed",
    "AccountNotFound",
    "AccountOpened",
    "AccountStatus",
    "BusinessRuleViolation",
    "CurrencyMismatch",
    "DomainError",
    "DomainEvent",
    "InsufficientFunds",
    "InvalidAmount",
    "InvalidCurrency",
    "InvalidOwner",
    "InvalidReference",
    "InvalidValue",
    "MoneyDeposited",
    "MoneyWithdrawn",
    "NonZeroBalance",
    "SelfTransfer",
    "TransferCredited",
    "TransferDebited",
    "VersionMismatch",
    "event_from_stored",
    "format_amount",
    "parse_amount",
    "transfer",
]
