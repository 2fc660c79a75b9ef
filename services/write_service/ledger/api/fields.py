"""Serializer fields whose rules are the domain's, so a value is judged the same at the edge and inside."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from write_service.ledger.domain import InvalidValue, format_amount, parse_amount
from write_service.ledger.domain.account import validate_currency, validate_owner
from write_service.ledger.domain.currencies import DEFAULT_CURRENCY

AMOUNT_PATTERN = r"^[0-9]+(\.[0-9]{1,2})?$"


class _DomainValidatedField(serializers.Field):
    def validate_with(self, rule: Any, data: Any) -> Any:
        try:
            return rule(data)
        except InvalidValue as error:
            raise serializers.ValidationError(error.detail) from error


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "pattern": AMOUNT_PATTERN, "example": "10.00"},
            {"type": "number", "multipleOf": 0.01, "minimum": 0.01, "maximum": 1000000000},
        ],
        "description": "More than 0, at most 1000000000.00, at most 2 decimals.",
    }
)
class AmountField(_DomainValidatedField):
    def to_internal_value(self, data: Any) -> Decimal:
        return self.validate_with(parse_amount, data)

    def to_representation(self, value: Decimal) -> str:
        return format_amount(value)


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": 100, "example": "alice"})
class OwnerField(_DomainValidatedField):
    def to_internal_value(self, data: Any) -> str:
        return self.validate_with(validate_owner, data)

    def to_representation(self, value: str) -> str:
        return value


@extend_schema_field(
    {"type": "string", "pattern": "^[A-Z]{3}$", "default": DEFAULT_CURRENCY, "description": "ISO 4217"}
)
class CurrencyField(_DomainValidatedField):
    def to_internal_value(self, data: Any) -> str:
        return self.validate_with(validate_currency, data)

    def to_representation(self, value: str) -> str:
        return value
