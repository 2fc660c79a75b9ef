"""The relay's progress moves out of the event rows: a high-water mark and the gaps below it.

- `outbox_progress`: one row, `mark`: every event with a position <= mark has been confirmed by RabbitMQ,
  or its position is in `outbox_gaps`. `advanced_at`: when the mark last moved.
- `outbox_gaps`: positions the relay found missing below an event it published (their transaction had not
  committed, or never will), with `recorded_xid`, the id of the transaction that recorded them: a gap is
  published when its event appears, and forgotten once no transaction that could still commit it runs
  (`write_service/outbox/store.py` says why `recorded_xid <= pg_snapshot_xmin` proves that).
- `outbox_unpublished`: the events still to publish (after the mark, or in a gap), for people and metrics.
- TRUNCATE of `events` (tests, Django's flush) empties the outbox with it: no position handed out so far can
  appear any more (TRUNCATE waits for every transaction that inserted into `events`), so the mark becomes
  the sequence's last value, 0 if TRUNCATE restarted it.

The mark starts at the last event the relay marked published so far (`published_at`, dropped in 0009), the
unmarked events below it become gaps. `events` is locked first, so that no transaction holding a position
is still running: every position below the mark without a row is one that can never appear.

Going back marks as published, in `published_at`, every event the mark says was.
"""

from django.db import migrations

EVENT_COLUMNS = (
    "e.position, e.event_id, e.aggregate_type, e.aggregate_id, e.aggregate_version, e.event_type,"
    " e.schema_version, e.data, e.occurred_at, e.correlation_id, e.causation_id"
)

FORWARD = f"""
CREATE TABLE outbox_progress (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    mark        bigint NOT NULL CHECK (mark >= 0),
    advanced_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE outbox_gaps (
    position     bigint PRIMARY KEY,
    recorded_xid xid8 NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);

LOCK TABLE events IN SHARE MODE;

INSERT INTO outbox_progress (mark)
SELECT coalesce(
    (SELECT position FROM events WHERE published_at IS NOT NULL ORDER BY position DESC LIMIT 1), 0);

INSERT INTO outbox_gaps (position, recorded_xid)
SELECT e.position, pg_current_xact_id()
  FROM events e
 WHERE e.published_at IS NULL AND e.position < (SELECT mark FROM outbox_progress);

CREATE VIEW outbox_unpublished AS
SELECT {EVENT_COLUMNS}
  FROM events e
 WHERE e.position > coalesce((SELECT mark FROM outbox_progress), 0)
UNION ALL
SELECT {EVENT_COLUMNS}
  FROM outbox_gaps g
  JOIN events e ON e.position = g.position
 WHERE g.position <= coalesce((SELECT mark FROM outbox_progress), 0);

CREATE FUNCTION outbox_reset_on_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM outbox_gaps;
    INSERT INTO outbox_progress (mark)
    VALUES (coalesce(pg_sequence_last_value(pg_get_serial_sequence('events', 'position')::regclass), 0))
    ON CONFLICT (singleton) DO UPDATE SET mark = excluded.mark, advanced_at = now();
    RETURN NULL;
END $$;

CREATE TRIGGER events_truncated
    AFTER TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_reset_on_truncate();
"""

BACKWARD = """
DROP TRIGGER events_truncated ON events;
DROP FUNCTION outbox_reset_on_truncate();
DROP VIEW outbox_unpublished;

LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE;
UPDATE events e SET published_at = p.advanced_at
  FROM outbox_progress p
 WHERE e.published_at IS NULL AND e.position <= p.mark
   AND NOT EXISTS (SELECT FROM outbox_gaps g WHERE g.position = e.position);

DROP TABLE outbox_gaps;
DROP TABLE outbox_progress;
"""


class Migration(migrations.Migration):
    dependencies = [("ledger", "0007_events_position_after_xid")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
