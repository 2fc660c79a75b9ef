"""The read database: read models shaped for the queries, and the projector's own bookkeeping.

Read models (what the API serves): `AccountView` (one row per account, as GET /api/accounts/{id} shows it),
`StatementLine` (one row per money movement, as the statement lists it) and `CurrencyTotal` (kept
incrementally so /api/stats never scans accounts).

Bookkeeping (what makes the projection exactly-once and observable): `AppliedEvent` is the tracking record
written in the same transaction as the read-model change, so its highest version per account is the cursor
the apply step checks; `PendingEvent` holds events that arrived ahead of their predecessor; `ProjectorState`
is the single row with mode, heartbeat and counters; `DeadLetter` records every message sent to the
dead-letter queue.

The apply step and its handlers write these tables with plain SQL (all of it in `apply_sql.py`); the models
exist for migrations and reads.
"""

from __future__ import annotations

from django.db import models

KINDS = ("deposit", "withdrawal", "transfer_in", "transfer_out")
STATUSES = ("open", "closed")
PATHS = ("broker", "replication")


class AccountView(models.Model):
    account_id = models.UUIDField(primary_key=True)
    owner = models.CharField(max_length=100)
    currency = models.CharField(max_length=3)
    balance = models.DecimalField(max_digits=20, decimal_places=2)
    status = models.CharField(max_length=6)
    version = models.PositiveIntegerField()
    opened_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "account_view"
        # The list endpoint filters by owner and/or status and pages in (opened_at, account_id) order.
        indexes = [
            models.Index(fields=["opened_at", "account_id"], name="account_view_page_idx"),
            models.Index(fields=["owner", "opened_at", "account_id"], name="account_view_owner_idx"),
            models.Index(fields=["status", "opened_at", "account_id"], name="account_view_status_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(status__in=STATUSES), name="account_view_status_valid"),
        ]


class StatementLine(models.Model):
    """One money movement on one account; `version` is the event's version, so the statement is in order."""

    pk = models.CompositePrimaryKey("account_id", "version")
    account_id = models.UUIDField()
    version = models.PositiveIntegerField()
    kind = models.CharField(max_length=12)
    amount = models.DecimalField(max_digits=20, decimal_places=2)
    balance_after = models.DecimalField(max_digits=20, decimal_places=2)
    counterparty = models.UUIDField(null=True)
    transfer_id = models.UUIDField(null=True)
    occurred_at = models.DateTimeField()
    # The depositor's reference of a deposit (MoneyDeposited version 2); null for the others, and for a
    # deposit stored as version 1, which reads as version 2 without one.
    reference = models.TextField(null=True)

    class Meta:
        db_table = "statement_lines"
        constraints = [
            models.CheckConstraint(condition=models.Q(kind__in=KINDS), name="statement_lines_kind_valid"),
        ]


class CurrencyTotal(models.Model):
    currency = models.CharField(max_length=3, primary_key=True)
    total_balance = models.DecimalField(max_digits=24, decimal_places=2)
    accounts = models.PositiveIntegerField()
    open_accounts = models.PositiveIntegerField()

    class Meta:
        db_table = "currency_totals"


class AppliedEvent(models.Model):
    """The tracking record: one row per applied event, committed with the read-model change it caused."""

    event_id = models.UUIDField(primary_key=True)
    aggregate_id = models.UUIDField()
    version = models.PositiveIntegerField()
    position = models.BigIntegerField()
    type = models.CharField(max_length=64)
    occurred_at = models.DateTimeField()
    applied_at = models.DateTimeField()
    path = models.CharField(max_length=16)

    class Meta:
        db_table = "applied_events"
        constraints = [
            # Also the index behind "highest applied version of this account" (the apply step's cursor).
            models.UniqueConstraint(fields=["aggregate_id", "version"], name="applied_events_version_uniq"),
            models.CheckConstraint(condition=models.Q(path__in=PATHS), name="applied_events_path_valid"),
        ]
        # Lag over a recent window: WHERE applied_at > now() - interval '...'.
        indexes = [models.Index(fields=["applied_at"], name="applied_events_applied_at_idx")]


class PendingEvent(models.Model):
    """An event that arrived ahead of its predecessor; applied as soon as the gap before it is filled."""

    event_id = models.UUIDField(primary_key=True)
    aggregate_id = models.UUIDField()
    version = models.PositiveIntegerField()
    position = models.BigIntegerField()
    type = models.CharField(max_length=64)
    occurred_at = models.DateTimeField()
    envelope = models.JSONField()
    path = models.CharField(max_length=16)
    received_at = models.DateTimeField()

    class Meta:
        db_table = "pending_events"
        constraints = [
            models.UniqueConstraint(fields=["aggregate_id", "version"], name="pending_events_version_uniq"),
        ]


class ProjectorState(models.Model):
    """A single row (id 1): which path feeds the projection, when the projector last spoke, and counters."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    mode = models.CharField(max_length=16, default="broker")
    heartbeat_at = models.DateTimeField(null=True)
    events_applied = models.BigIntegerField(default=0)
    last_event_at = models.DateTimeField(null=True)
    last_applied_at = models.DateTimeField(null=True)

    class Meta:
        db_table = "projector_state"
        constraints = [
            models.CheckConstraint(condition=models.Q(id=1), name="projector_state_single_row"),
            models.CheckConstraint(condition=models.Q(mode__in=PATHS), name="projector_state_mode_valid"),
        ]


class DeadLetter(models.Model):
    """A message sent to the dead-letter queue.

    `body` is NULL when the message itself sits in `read-service.projector.dlq` (the usual case). It holds the
    event when no message exists any more, e.g. an event that waited in `pending_events` and then failed: its
    message was acknowledged when it was parked, so this record is the only copy `dlq replay` can resend.
    """

    id = models.BigAutoField(primary_key=True)
    message_id = models.CharField(max_length=255, null=True)
    event_type = models.CharField(max_length=64, null=True)
    routing_key = models.CharField(max_length=255, null=True)
    reason = models.CharField(max_length=64)
    detail = models.TextField()
    body = models.BinaryField(null=True)
    dead_lettered_at = models.DateTimeField()
    replayed_at = models.DateTimeField(null=True)
    purged_at = models.DateTimeField(null=True)

    class Meta:
        db_table = "dead_letters"
        indexes = [
            models.Index(
                fields=["message_id"],
                name="dead_letters_open_idx",
                condition=models.Q(replayed_at__isnull=True, purged_at__isnull=True),
            ),
        ]


class ReplicaCursor(models.Model):
    """A single row (id 1): how far the replication fallback has handled the replicated `events` table.

    `replica_seq` is the replica's subscriber-local commit-order number (see `event_log/replica.py`); every
    row at or below it is applied, parked or dead-lettered. Kept apart from `projector_state`, which every
    apply transaction updates, so the fallback's progress never contends with the broker path's.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    replica_seq = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "replica_cursor"
        constraints = [
            models.CheckConstraint(condition=models.Q(id=1), name="replica_cursor_single_row"),
        ]


def _tables(*tables: type[models.Model]) -> tuple[str, ...]:
    return tuple(table._meta.db_table for table in tables)


# The tables the apply step writes, declared once. The rebuild (rebuild.py) builds the read models and their
# tracking rows anew in a shadow schema and swaps them in:
REBUILT_TABLES = _tables(AccountView, StatementLine, CurrencyTotal, AppliedEvent)
# written by every batch and kept live (the swap holds them with the rebuilt ones, so the projector waits):
BATCH_STATE_TABLES = _tables(PendingEvent, ProjectorState)
# written when an event fails, kept live:
FAILURE_TABLES = _tables(DeadLetter)
# The rebuild shadows all of them, so that the apply step it runs never writes a live table.
APPLY_TABLES = (*REBUILT_TABLES, *BATCH_STATE_TABLES, *FAILURE_TABLES)
