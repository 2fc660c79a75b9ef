"""One thin API class per query (CONTRACT.md, "Read API"): validate parameters, call selectors, serialise."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, pagination, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from read_service.queries import selectors
from read_service.queries.consistency import WaitsExhausted, account_version_wait
from read_service.queries.serializers import (
    AccountFilterParams,
    AccountOutput,
    ConsistencyParams,
    PageParams,
    ProjectionOutput,
    StatementLineOutput,
    StatsOutput,
    problems,
)

TOKEN_HEADER = "X-Consistency-Token"
CONSISTENCY_PARAMETERS = [
    ConsistencyParams,
    OpenApiParameter(
        TOKEN_HEADER,
        str,
        OpenApiParameter.HEADER,
        description="<account_id>:<version> as a command returned it: wait until that account's projected "
        "version is at least <version> (up to wait_ms)",
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}:[1-9][0-9]*$",
    ),
]


class ProjectionBehind(exceptions.APIException):
    status_code = 503
    default_detail = "The projection has not reached the requested version yet; retry shortly."
    default_code = "projection_behind"
    wait = 1  # DRF turns this into Retry-After


class TooManyWaits(exceptions.APIException):
    status_code = 503
    default_detail = (
        "This server holds as many read-your-writes waits as it may; retry shortly, or read without waiting."
    )
    default_code = "too_many_waits"
    wait = 1


class Pagination(pagination.PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def _validated(serializer_class: type[serializers.Serializer], data: Any) -> dict:
    """The query parameters `serializer_class` declares, validated; 400 for any that is invalid.

    DRF takes an empty query parameter (`?status=`) for an absent one, as HTML forms send them; here it would
    drop a filter or a wait the client asked for, so present but empty is invalid too.
    """
    blank = {
        name: ["This field may not be blank."] for name in serializer_class().fields if data.get(name) == ""
    }
    if blank:
        raise exceptions.ValidationError(blank)
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _wait_for_consistency(request: Request, account_id: UUID) -> None:
    """Read-your-writes: waits for `min_version` (this account) and the token (its account), or raises 503."""
    params = _validated(ConsistencyParams, request.query_params)
    targets = [(account_id, params["min_version"])] if "min_version" in params else []
    token = request.headers.get(TOKEN_HEADER)
    if token is not None:
        targets.append(_parse_token(token))
    deadline = time.monotonic() + params["wait_ms"] / 1000
    for target_account, version in targets:
        timeout = max(0.0, deadline - time.monotonic())
        try:
            reached = account_version_wait(account_id=target_account, min_version=version, timeout=timeout)
        except WaitsExhausted:
            raise TooManyWaits() from None
        if not reached:
            raise ProjectionBehind()


def _parse_token(token: str) -> tuple[UUID, int]:
    account, _, version = token.strip().rpartition(":")
    try:
        parsed = UUID(account), int(version)
    except ValueError:
        parsed = None
    if parsed is None or parsed[1] < 1:
        raise exceptions.ValidationError({TOKEN_HEADER: ["Expected <account_id>:<version>, e.g. <uuid>:3."]})
    return parsed


def _not_projected(account_id: UUID) -> exceptions.NotFound:
    return exceptions.NotFound(f"Account {account_id} is unknown or not projected yet.")


class AccountDetailApi(APIView):
    @extend_schema(
        operation_id="account_get",
        summary="One account",
        parameters=CONSISTENCY_PARAMETERS,
        responses={200: AccountOutput, **problems(400, 404, 503)},
    )
    def get(self, request: Request, account_id: UUID) -> Response:
        _wait_for_consistency(request, account_id)
        account = selectors.account_get(account_id=account_id)
        if account is None:
            raise _not_projected(account_id)
        return Response(AccountOutput(account).data)


class AccountListApi(generics.ListAPIView):
    serializer_class = AccountOutput
    pagination_class = Pagination

    @extend_schema(
        operation_id="account_list",
        summary="Accounts, oldest first, filtered by owner and status",
        parameters=[AccountFilterParams],
        responses={200: AccountOutput(many=True), **problems(400, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.list(request)

    def get_queryset(self) -> Any:
        filters = _validated(AccountFilterParams, self.request.query_params)
        return selectors.account_list(owner=filters.get("owner"), status=filters.get("status"))


class AccountTransactionsApi(generics.ListAPIView):
    serializer_class = StatementLineOutput
    pagination_class = Pagination

    @extend_schema(
        operation_id="account_transactions",
        summary="An account's money movements, oldest first",
        parameters=[PageParams, *CONSISTENCY_PARAMETERS],
        responses={200: StatementLineOutput(many=True), **problems(400, 404, 503)},
    )
    def get(self, request: Request, account_id: UUID) -> Response:
        _validated(PageParams, request.query_params)
        _wait_for_consistency(request, account_id)
        if selectors.account_version_get(account_id=account_id) is None:
            raise _not_projected(account_id)
        return self.list(request)

    def get_queryset(self) -> Any:
        return selectors.account_statement(account_id=self.kwargs["account_id"])


class StatsApi(APIView):
    @extend_schema(operation_id="stats_get", summary="Totals over all accounts", responses={200: StatsOutput})
    def get(self, request: Request) -> Response:
        return Response(StatsOutput(selectors.stats_get()).data)


class ProjectionApi(APIView):
    @extend_schema(
        operation_id="projection_get",
        summary="How the projection is doing: mode, progress, lag, dead letters",
        responses={200: ProjectionOutput},
    )
    def get(self, request: Request) -> Response:
        return Response(ProjectionOutput(selectors.projection_status_get()).data)
