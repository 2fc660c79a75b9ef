"""Why the domain refuses a command. The API maps each family to one HTTP status (CONTRACT.md, "Errors").

- `InvalidValue`: a field breaks a value rule (400, reported per field);
- `BusinessRuleViolation`: the account's state forbids the command (409);
- `AccountNotFound`: no such aggregate (404);
- `VersionMismatch`: the caller's expected version is stale (412).

`reason` is a stable snake_case name for logs and problem types; the message is for people.
"""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID


class DomainError(Exception):
    reason = "domain_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidValue(DomainError):
    reason = "invalid_value"
    field = "non_field_errors"


class InvalidAmount(InvalidValue):
    reason = "invalid_amount"
    field = "amount"


class InvalidOwner(InvalidValue):
    reason = "invalid_owner"
    field = "owner"


class InvalidCurrency(InvalidValue):
    reason = "invalid_currency"
    field = "currency"


class InvalidReference(InvalidValue):
    reason = "invalid_reference"
    field = "reference"


class BusinessRuleViolation(DomainError):
    reason = "business_rule_violated"


class InsufficientFunds(BusinessRuleViolation):
    reason = "insufficient_funds"

    def __init__(self, account_id: UUID, balance: Decimal, amount: Decimal) -> None:
        super().__init__(f"Account {account_id} holds {balance}, less than the {amount} requested.")


class AccountIsClosed(BusinessRuleViolation):
    reason = "account_closed"

    def __init__(self, account_id: UUID) -> None:
        super().__init__(f"Account {account_id} is closed.")


class NonZeroBalance(BusinessRuleViolation):
    reason = "non_zero_balance"

    def __init__(self, account_id: UUID, balance: Decimal) -> None:
        super().__init__(f"Account {account_id} still holds {balance}; only an empty account can be closed.")


class SelfTransfer(BusinessRuleViolation):
    reason = "transfer_to_itself"

    def __init__(self, account_id: UUID) -> None:
        super().__init__(f"Account {account_id} cannot transfer to itself.")


class CurrencyMismatch(BusinessRuleViolation):
    reason = "currency_mismatch"

    def __init__(self, source_currency: str, target_currency: str) -> None:
        super().__init__(f"Cannot transfer {source_currency} to an account held in {target_currency}.")


class AccountNotFound(DomainError):
    reason = "account_not_found"

    def __init__(self, account_id: UUID) -> None:
        super().__init__(f"Account {account_id} does not exist.")
        self.account_id = account_id


class VersionMismatch(DomainError):
    reason = "version_mismatch"

    def __init__(self, account_id: UUID, expected: int, actual: int) -> None:
        super().__init__(f"Account {account_id} is at version {actual}, not the expected {expected}.")
        self.actual = actual
