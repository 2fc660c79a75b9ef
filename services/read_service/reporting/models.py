"""The reporting subscriber's tables in the read database: its read model and its own bookkeeping.

Every row carries the name of its subscription, so two subscribers (the one that runs, one an experiment
starts late beside it) keep apart in the same tables. The subscriber writes them with plain SQL
(counting.py); the models exist for migrations and reads.

- `DailyTotal`: the read model, one row per subscription, UTC day and currency;
- `ReportingAccount`: each account's currency, from its AccountOpened, which its money events need;
- `CountedEvent`: one row per event counted, committed with the totals it changed: what makes a second
  delivery of the same event (from the log, then from the queue) a duplicate instead of a double count;
- `SubscriptionState`: the subscription's phase (`catching_up` or `live`), its cursor in the log, when its
  queue was bound, and its counters.
"""

from __future__ import annotations

from django.db import models

# The subscription `python -m read_service reporting` runs by default, which the API serves.
DEFAULT_SUBSCRIPTION = "daily-totals"
CATCHING_UP = "catching_up"
LIVE = "live"
PHASES = (CATCHING_UP, LIVE)
HISTORY = "history"  # counted from the log
LIVE_PATH = "live"  # counted from the queue
PATHS = (HISTORY, LIVE_PATH)


class DailyTotal(models.Model):
    pk = models.CompositePrimaryKey("subscription", "day", "currency")
    subscription = models.CharField(max_length=64)
    day = models.DateField()
    currency = models.CharField(max_length=3)
    accounts_opened = models.PositiveIntegerField(default=0)
    deposits = models.PositiveIntegerField(default=0)
    deposited = models.DecimalField(max_digits=24, decimal_places=2, default=0)
    withdrawals = models.PositiveIntegerField(default=0)
    withdrawn = models.DecimalField(max_digits=24, decimal_places=2, default=0)
    # A transfer counts once, on its debit (its credit moves the same money).
    transfers = models.PositiveIntegerField(default=0)
    transferred = models.DecimalField(max_digits=24, decimal_places=2, default=0)
    largest_movement = models.DecimalField(max_digits=20, decimal_places=2, default=0)
    events = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "reporting_daily_totals"


class ReportingAccount(models.Model):
    pk = models.CompositePrimaryKey("subscription", "account_id")
    subscription = models.CharField(max_length=64)
    account_id = models.UUIDField()
    currency = models.CharField(max_length=3)

    class Meta:
        db_table = "reporting_accounts"


class CountedEvent(models.Model):
    pk = models.CompositePrimaryKey("subscription", "event_id")
    subscription = models.CharField(max_length=64)
    event_id = models.UUIDField()
    position = models.BigIntegerField()
    path = models.CharField(max_length=8)
    counted_at = models.DateTimeField()

    class Meta:
        db_table = "reporting_counted_events"
        constraints = [
            models.CheckConstraint(condition=models.Q(path__in=PATHS), name="reporting_counted_path_valid"),
        ]


class SubscriptionState(models.Model):
    subscription = models.CharField(max_length=64, primary_key=True)
    phase = models.CharField(max_length=12)
    # How far the log was read: its `replica_seq` (commit order), see history.py.
    replica_seq = models.BigIntegerField(default=0)
    # When the queue was (last) found missing and declared: events published since are in it.
    bound_at = models.DateTimeField()
    switched_at = models.DateTimeField(null=True)
    history_events = models.BigIntegerField(default=0)
    live_events = models.BigIntegerField(default=0)
    # Deliveries from the queue of events already counted (from the log, around the switch, or redelivered).
    live_duplicates = models.BigIntegerField(default=0)
    last_event_at = models.DateTimeField(null=True)
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "reporting_subscriptions"
        constraints = [
            models.CheckConstraint(condition=models.Q(phase__in=PHASES), name="reporting_phase_valid"),
        ]
