"""Amounts of money: `Decimal` with two places, never float.

An amount arrives as a JSON string ("12.50") or number (already a `Decimal`, see the API's JSON parser) and
leaves as a string with exactly two decimals. "10.000" is accepted as 10.00 (the value has no third
decimal); "10.005" is refused.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from write_service.ledger.domain.errors import InvalidAmount

CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("1000000000.00")
ZERO = Decimal("0.00")
_PLAIN_DECIMAL = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


def parse_amount(value: object) -> Decimal:
    """The amount `value` stands for, with two decimals; raises `InvalidAmount` naming the broken rule."""
    amount = _to_decimal(value)
    if not amount.is_finite():
        raise InvalidAmount("Amount must be a finite number.")
    if amount <= 0:
        raise InvalidAmount("Amount must be greater than 0.")
    if amount > MAX_AMOUNT:
        raise InvalidAmount(f"Amount must be at most {MAX_AMOUNT}.")
    cents = amount.quantize(CENT)
    if cents != amount:
        raise InvalidAmount("Amount must have at most 2 decimal places.")
    return cents


def format_amount(amount: Decimal) -> str:
    """ "12.50": the one text form of money in responses and events."""
    return str(amount.quantize(CENT))


def _to_decimal(value: object) -> Decimal:
    # bool is an int in Python, but `true` is not an amount.
    if isinstance(value, bool) or value is None:
        raise InvalidAmount('Amount must be a decimal number or a string such as "12.50".')
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str) and _PLAIN_DECIMAL.match(value):
        try:
            return Decimal(value)
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid literals
            pass
    raise InvalidAmount('Amount must be a decimal number or a string such as "12.50".')
