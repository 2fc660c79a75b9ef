"""Shapes of the read API (CONTRACT.md, "Read API"): query parameters in, JSON bodies out."""

from __future__ import annotations

from rest_framework import serializers

from cqrs_common import config
from cqrs_common.web.problem_body import PROBLEM_CONTENT_TYPE

MAX_WAIT_MS = config.read_wait_max_ms()
DEFAULT_WAIT_MS = min(5_000, MAX_WAIT_MS)


class AccountOutput(serializers.Serializer):
    account_id = serializers.UUIDField()
    owner = serializers.CharField()
    currency = serializers.CharField()
    balance = serializers.DecimalField(max_digits=20, decimal_places=2)
    status = serializers.ChoiceField(choices=["open", "closed"])
    version = serializers.IntegerField()
    opened_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class StatementLineOutput(serializers.Serializer):
    version = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=["deposit", "withdrawal", "transfer_in", "transfer_out"])
    amount = serializers.DecimalField(max_digits=20, decimal_places=2)
    balance_after = serializers.DecimalField(max_digits=20, decimal_places=2)
    counterparty = serializers.UUIDField(allow_null=True, help_text="The other account of a transfer")
    transfer_id = serializers.UUIDField(allow_null=True)
    reference = serializers.CharField(
        allow_null=True, help_text="The depositor's reference of a deposit, as given; null when none"
    )
    occurred_at = serializers.DateTimeField()


class StatsOutput(serializers.Serializer):
    accounts = serializers.IntegerField()
    open_accounts = serializers.IntegerField()
    total_balance = serializers.DictField(
        child=serializers.DecimalField(max_digits=24, decimal_places=2), help_text="Per currency"
    )
    events_applied = serializers.IntegerField()


class ReplicationOutput(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["streaming", "stopped", "disabled", "absent"],
        help_text="streaming: the subscription's worker runs; stopped: enabled but failing (a conflicting "
        "row, a lost slot, no publisher: see the read database's log); disabled; absent: no subscription",
    )
    subscription = serializers.CharField(allow_null=True)
    apply_errors = serializers.IntegerField(help_text="Errors of the subscription's apply worker so far")
    last_received_at = serializers.DateTimeField(allow_null=True)


class ProjectionOutput(serializers.Serializer):
    mode = serializers.ChoiceField(choices=["broker", "replication"])
    events_applied = serializers.IntegerField()
    last_event_at = serializers.DateTimeField(allow_null=True)
    lag_seconds = serializers.FloatField()
    dead_lettered = serializers.IntegerField(help_text="Dead-lettered messages neither replayed nor purged")
    # Beyond the contract's fields: the logical replication that feeds the fallback path.
    replication = ReplicationOutput()


class PageParams(serializers.Serializer):
    page = serializers.IntegerField(min_value=1, required=False)
    page_size = serializers.IntegerField(min_value=1, max_value=500, required=False)


class AccountFilterParams(PageParams):
    owner = serializers.CharField(min_length=1, max_length=100, required=False)
    status = serializers.ChoiceField(choices=["open", "closed"], required=False)


class ConsistencyParams(serializers.Serializer):
    min_version = serializers.IntegerField(
        min_value=1, required=False, help_text="Wait until the projected version is at least this"
    )
    wait_ms = serializers.IntegerField(
        min_value=0,
        max_value=MAX_WAIT_MS,
        default=DEFAULT_WAIT_MS,
        help_text="How long to wait for min_version or X-Consistency-Token; 503 with Retry-After after that",
    )


class ProblemOutput(serializers.Serializer):
    """RFC 9457 problem details, the body of every 4xx and 5xx."""

    type = serializers.URLField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)


def problems(*statuses: int) -> dict:
    return {(status, PROBLEM_CONTENT_TYPE): ProblemOutput for status in statuses}
