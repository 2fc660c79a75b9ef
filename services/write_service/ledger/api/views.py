"""One thin API class per command (CONTRACT.md, "Write API"): validate input, call one service, answer; and
the serializers and fields of their bodies."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request

from write_service.ledger import services
from write_service.ledger.api.command import CommandApi, command_response
from write_service.ledger.api.schema import COMMAND_HEADERS, IF_MATCH_HEADER, problems, result_headers
from write_service.ledger.domain import Account, InvalidValue, format_amount, parse_amount
from write_service.ledger.domain.account import (
    REFERENCE_MAX_LENGTH,
    validate_currency,
    validate_owner,
    validate_reference,
)
from write_service.ledger.domain.currencies import DEFAULT_CURRENCY

ON_ACCOUNT = [*COMMAND_HEADERS, IF_MATCH_HEADER, *result_headers(200)]


AMOUNT_PATTERN = r"^[0-9]+(\.[0-9]{1,2})?$"


class _DomainValidatedField(serializers.Field):
    """A field whose rules are the domain's, so a value is judged the same at the edge and inside."""

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


@extend_schema_field(
    {
        "type": "string",
        "nullable": True,
        "minLength": 1,
        "maxLength": REFERENCE_MAX_LENGTH,
        "example": "INV-2026-0042",
        "description": "The depositor's reference (a bank transfer's, say), kept as given; null or absent: "
        "none. No NUL characters or lone surrogates.",
    }
)
class ReferenceField(_DomainValidatedField):
    def to_internal_value(self, data: Any) -> str | None:
        return self.validate_with(validate_reference, data)

    def to_representation(self, value: str | None) -> str | None:
        return value


class AccountVersionSerializer(serializers.Serializer):
    account_id = serializers.UUIDField()
    version = serializers.IntegerField()


class AccountBalanceSerializer(AccountVersionSerializer):
    balance = serializers.DecimalField(max_digits=20, decimal_places=2)


class AmountSerializer(serializers.Serializer):
    amount = AmountField()


class DepositSerializer(AmountSerializer):
    reference = ReferenceField(required=False, allow_null=True, default=None)


def _balance_response(account: Account) -> HttpResponse:
    body = AccountBalanceSerializer(
        {"account_id": account.id, "version": account.version, "balance": account.balance}
    ).data
    return command_response(200, body, account.id, account.version)


class AccountOpenApi(CommandApi):
    @extend_schema_serializer(component_name="AccountOpenInput")
    class InputSerializer(serializers.Serializer):
        owner = OwnerField()
        currency = CurrencyField(required=False, default=DEFAULT_CURRENCY)

    @extend_schema(
        operation_id="account_open",
        summary="Open an account",
        request=InputSerializer,
        responses={201: AccountVersionSerializer, **problems(400, 422)},
        parameters=[*COMMAND_HEADERS, *result_headers(201)],
    )
    def post(self, request: Request) -> HttpResponse:
        data = self.validated(request, self.InputSerializer)

        def command(_expected_version: int | None) -> HttpResponse:
            # If-Match has no version to compare with before the account exists; it is ignored here.
            account = services.account_open(
                owner=data["owner"], currency=data["currency"], correlation_id=request.correlation_id
            )
            body = AccountVersionSerializer({"account_id": account.id, "version": account.version}).data
            return command_response(201, body, account.id, account.version)

        return self.execute(request, command)


class AccountDepositApi(CommandApi):
    @extend_schema(
        operation_id="account_deposit",
        summary="Deposit money",
        request=DepositSerializer,
        responses={200: AccountBalanceSerializer, **problems(400, 404, 409, 412, 422)},
        parameters=ON_ACCOUNT,
    )
    def post(self, request: Request, account_id: UUID) -> HttpResponse:
        data = self.validated(request, DepositSerializer)

        def command(expected_version: int | None) -> HttpResponse:
            account = services.account_deposit(
                account_id=account_id,
                amount=data["amount"],
                reference=data["reference"],
                expected_version=expected_version,
                correlation_id=request.correlation_id,
            )
            return _balance_response(account)

        return self.execute(request, command)


class AccountWithdrawApi(CommandApi):
    @extend_schema(
        operation_id="account_withdraw",
        summary="Withdraw money",
        request=AmountSerializer,
        responses={200: AccountBalanceSerializer, **problems(400, 404, 409, 412, 422)},
        parameters=ON_ACCOUNT,
    )
    def post(self, request: Request, account_id: UUID) -> HttpResponse:
        data = self.validated(request, AmountSerializer)

        def command(expected_version: int | None) -> HttpResponse:
            account = services.account_withdraw(
                account_id=account_id,
                amount=data["amount"],
                expected_version=expected_version,
                correlation_id=request.correlation_id,
            )
            return _balance_response(account)

        return self.execute(request, command)


class AccountCloseApi(CommandApi):
    @extend_schema_serializer(component_name="AccountCloseInput")
    class InputSerializer(serializers.Serializer):
        """An empty object: closing takes no arguments."""

    @extend_schema(
        operation_id="account_close",
        summary="Close an account with a zero balance",
        request=InputSerializer,
        responses={200: AccountVersionSerializer, **problems(400, 404, 409, 412, 422)},
        parameters=ON_ACCOUNT,
    )
    def post(self, request: Request, account_id: UUID) -> HttpResponse:
        self.validated(request, self.InputSerializer)

        def command(expected_version: int | None) -> HttpResponse:
            account = services.account_close(
                account_id=account_id,
                expected_version=expected_version,
                correlation_id=request.correlation_id,
            )
            body = AccountVersionSerializer({"account_id": account.id, "version": account.version}).data
            return command_response(200, body, account.id, account.version)

        return self.execute(request, command)


class TransferCreateApi(CommandApi):
    @extend_schema_serializer(component_name="TransferCreateInput")
    class InputSerializer(serializers.Serializer):
        from_account = serializers.UUIDField()
        to_account = serializers.UUIDField()
        amount = AmountField()

    @extend_schema_serializer(component_name="TransferCreateOutput")
    class OutputSerializer(serializers.Serializer):
        transfer_id = serializers.UUIDField()
        from_account = AccountVersionSerializer()
        to_account = AccountVersionSerializer()

    @extend_schema(
        operation_id="transfer_create",
        summary="Transfer money between two accounts of the same currency",
        description="ETag, X-Consistency-Token and If-Match refer to the source account.",
        request=InputSerializer,
        responses={201: OutputSerializer, **problems(400, 404, 409, 412, 422)},
        parameters=[*COMMAND_HEADERS, IF_MATCH_HEADER, *result_headers(201)],
    )
    def post(self, request: Request) -> HttpResponse:
        data = self.validated(request, self.InputSerializer)

        def command(expected_version: int | None) -> HttpResponse:
            result = services.transfer_create(
                from_account=data["from_account"],
                to_account=data["to_account"],
                amount=data["amount"],
                expected_version=expected_version,
                correlation_id=request.correlation_id,
            )
            source, target = result.source, result.target
            body = self.OutputSerializer(
                {
                    "transfer_id": result.transfer_id,
                    "from_account": {"account_id": source.id, "version": source.version},
                    "to_account": {"account_id": target.id, "version": target.version},
                }
            ).data
            return command_response(201, body, source.id, source.version)

        return self.execute(request, command)
