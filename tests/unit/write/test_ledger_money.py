"""Amounts (ledger.domain.money): what is accepted, what is refused and why, and the one text form."""

from __future__ import annotations

from decimal import Decimal

import pytest

from write_service.ledger.domain import InvalidAmount, format_amount, parse_amount


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("10.00", Decimal("10.00")),
        ("10", Decimal("10.00")),
        ("0.01", Decimal("0.01")),
        ("12.5", Decimal("12.50")),
        ("10.000", Decimal("10.00")),  # no third decimal in the value
        (Decimal("0.1"), Decimal("0.10")),
        (7, Decimal("7.00")),
        (0.1, Decimal("0.10")),
        ("1000000000.00", Decimal("1000000000.00")),
        (Decimal("1E+2"), Decimal("100.00")),
    ],
)
def test_valid_amounts_become_two_decimal_decimals(given: object, expected: Decimal) -> None:
    amount = parse_amount(given)
    assert amount == expected
    assert amount.as_tuple().exponent == -2


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("0", "greater than 0"),
        ("0.00", "greater than 0"),
        ("-5", "greater than 0"),
        (0, "greater than 0"),
        (Decimal("-0.01"), "greater than 0"),
        ("0.001", "at most 2 decimal places"),
        ("10.005", "at most 2 decimal places"),
        (Decimal("1.234"), "at most 2 decimal places"),
        ("1000000000.01", "at most 1000000000.00"),
        (10**12, "at most 1000000000.00"),
        ("9" * 200, "at most 1000000000.00"),
        (Decimal("NaN"), "finite"),
        (Decimal("Infinity"), "finite"),
        ("abc", "decimal number"),
        ("", "decimal number"),
        (" 10", "decimal number"),
        ("1e3", "decimal number"),
        ("10,00", "decimal number"),
        (True, "decimal number"),
        (None, "decimal number"),
        ([], "decimal number"),
        ({"amount": 1}, "decimal number"),
    ],
)
def test_invalid_amounts_are_refused_naming_the_rule(given: object, message: str) -> None:
    with pytest.raises(InvalidAmount, match=message) as caught:
        parse_amount(given)
    assert caught.value.field == "amount"


@pytest.mark.parametrize(
    ("amount", "text"),
    [(Decimal("12.5"), "12.50"), (Decimal("0"), "0.00"), (Decimal("1000000000"), "1000000000.00")],
)
def test_amounts_are_written_with_two_decimals(amount: Decimal, text: str) -> None:
    assert format_amount(amount) == text
