"""GET /api/reports/daily and GET /api/reports/subscription (CONTRACT.md, "Read API"): the reporting read
model and the state of the subscriber that keeps it, for its default subscription."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, generics, pagination, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from read_service.queries.serializers import PageParams, problems
from read_service.reporting.models import DEFAULT_SUBSCRIPTION, PHASES, DailyTotal, SubscriptionState

MONEY = {"max_digits": 24, "decimal_places": 2}


class DailyParams(PageParams):
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False, help_text="ISO 4217, e.g. EUR")
    since = serializers.DateField(required=False, help_text="first UTC day (inclusive)")
    until = serializers.DateField(required=False, help_text="last UTC day (inclusive)")


class DailyTotalOutput(serializers.Serializer):
    day = serializers.DateField()
    currency = serializers.CharField()
    accounts_opened = serializers.IntegerField()
    deposits = serializers.IntegerField()
    deposited = serializers.DecimalField(**MONEY)
    withdrawals = serializers.IntegerField()
    withdrawn = serializers.DecimalField(**MONEY)
    transfers = serializers.IntegerField(help_text="Transfers out of accounts of this currency")
    transferred = serializers.DecimalField(**MONEY)
    largest_movement = serializers.DecimalField(**MONEY)
    events = serializers.IntegerField()


class SubscriptionOutput(serializers.Serializer):
    subscription = serializers.CharField()
    phase = serializers.ChoiceField(choices=PHASES)
    bound_at = serializers.DateTimeField(help_text="since when its queue keeps every event published")
    switched_at = serializers.DateTimeField(allow_null=True)
    history_events = serializers.IntegerField(help_text="events counted from the log")
    live_events = serializers.IntegerField(help_text="events counted from the queue")
    live_duplicates = serializers.IntegerField(help_text="deliveries skipped as already counted")
    last_event_at = serializers.DateTimeField(allow_null=True)


class DailyPagination(pagination.PageNumberPagination):
    page_size = 100
    max_page_size = 500
    page_size_query_param = "page_size"


class DailyTotalsApi(generics.ListAPIView):
    serializer_class = DailyTotalOutput
    pagination_class = DailyPagination

    @extend_schema(
        operation_id="reports_daily",
        summary="Money moved per UTC day and currency, newest day first",
        parameters=[DailyParams],
        responses={200: DailyTotalOutput(many=True), **problems(400, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.list(request)

    def get_queryset(self) -> QuerySet[DailyTotal]:
        data = self.request.query_params
        blank = {
            name: ["This field may not be blank."] for name in DailyParams().fields if data.get(name) == ""
        }
        if blank:
            raise exceptions.ValidationError(blank)
        params = DailyParams(data=data)
        params.is_valid(raise_exception=True)
        filters: dict[str, Any] = params.validated_data
        since: date | None = filters.get("since")
        until: date | None = filters.get("until")
        rows = DailyTotal.objects.filter(subscription=DEFAULT_SUBSCRIPTION)
        if "currency" in filters:
            rows = rows.filter(currency=filters["currency"])
        if since is not None:
            rows = rows.filter(day__gte=since)
        if until is not None:
            rows = rows.filter(day__lte=until)
        return rows.order_by("-day", "currency")


class SubscriptionApi(APIView):
    @extend_schema(
        operation_id="reports_subscription",
        summary="The reporting subscriber: catching up from the log or live, and what it counted",
        responses={200: SubscriptionOutput, **problems(404)},
    )
    def get(self, request: Request) -> Response:
        state = SubscriptionState.objects.filter(subscription=DEFAULT_SUBSCRIPTION).first()
        if state is None:
            raise exceptions.NotFound("The reporting subscriber has not started yet.")
        return Response(SubscriptionOutput(state).data)
