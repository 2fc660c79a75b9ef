"""Persistence of the write side: the current state of each account and the event store / outbox.

The domain (`ledger.domain`) knows nothing of these; `ledger.services` maps between them.
"""

from __future__ import annotations

import uuid

from django.db import models


class Account(models.Model):
    """Current state of one Account aggregate; `version` is the version of its last event."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    owner = models.CharField(max_length=100)
    currency = models.CharField(max_length=3)
    balance = models.DecimalField(max_digits=20, decimal_places=2)
    status = models.CharField(max_length=6)  # "open" or "closed"
    version = models.PositiveIntegerField()
    opened_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "accounts"


class Event(models.Model):
    """The event store and the outbox in one insert-only table (CONTRACT.md, "Events").

    `position` grows with insertion (a sequence, taken after the transaction's id: migration 0007), so the
    relay publishes in insertion order. A row is never written again: a trigger (migration 0009) refuses
    every UPDATE and every DELETE. What the relay has published it keeps beside the rows, in
    `outbox_progress` and `outbox_gaps` (migration 0008, `write_service/outbox/store.py`); the view
    `outbox_unpublished` lists what is still to publish. Logical replication publishes the inserts.
    """

    position = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(unique=True, default=uuid.uuid4)
    aggregate_type = models.CharField(max_length=32, default="account")
    aggregate_id = models.UUIDField()
    aggregate_version = models.PositiveIntegerField()
    event_type = models.CharField(max_length=64)
    schema_version = models.PositiveSmallIntegerField(default=1)
    data = models.JSONField()
    occurred_at = models.DateTimeField()
    correlation_id = models.CharField(max_length=128, null=True)
    causation_id = models.CharField(max_length=128, null=True)

    class Meta:
        db_table = "events"
        constraints = [
            models.UniqueConstraint(
                fields=["aggregate_id", "aggregate_version"], name="events_aggregate_version_uniq"
            )
        ]


class IdempotencyKey(models.Model):
    """The first response to a command sent with an `Idempotency-Key`, replayed byte for byte on a retry.

    Keys belong to the API client that sent them: `client` is the SHA-256 of its bearer token (never the
    token), so two clients choosing the same key never see each other's answers. The row is inserted before
    the command runs, in the command's transaction: a concurrent request with the same client and key waits
    on the primary key until the first commits, then finds the stored response. `fingerprint` (SHA-256 of
    method, path, If-Match and canonical body) tells a retry from a reuse of the key.
    """

    pk = models.CompositePrimaryKey("client", "key")
    client = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    # NULL only inside the claiming transaction, between the claim and the recorded response.
    status_code = models.PositiveSmallIntegerField(null=True)
    body = models.BinaryField(null=True)
    headers = models.JSONField(default=dict)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "idempotency_keys"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(key__regex=r"^.{1,255}$"), name="idempotency_keys_key_length"
            )
        ]
        # The purge finds expired keys (created_at past the TTL) without reading the whole table.
        indexes = [models.Index(fields=["created_at"], name="idempotency_keys_age_idx")]
