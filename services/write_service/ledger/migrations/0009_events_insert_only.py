"""`events` refuses every UPDATE and DELETE: nothing writes an event row again once it is inserted.

The relay records what it published beside the events (migration 0008), so `published_at`, the one column
that was ever set after the insert, and its partial index go. The trigger becomes a statement trigger that
refuses the statement itself, whatever rows it would touch. TRUNCATE stays possible for test teardown and
operators (and resets the outbox, 0008).

Going back restores the column (empty: 0008's way back fills it from the mark) and the trigger that let it be
set once.
"""

from django.db import migrations

FORWARD = """
DROP TRIGGER events_append_only ON events;

CREATE OR REPLACE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();
"""

# 0004's function and 0002's trigger: only published_at may be set, once.
BACKWARD = """
DROP TRIGGER events_append_only ON events;

CREATE OR REPLACE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'events is append-only: DELETE refused' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.published_at IS NOT NULL
       OR ROW(NEW.position, NEW.event_id, NEW.aggregate_type, NEW.aggregate_id, NEW.aggregate_version,
              NEW.event_type, NEW.schema_version, NEW.data, NEW.occurred_at, NEW.correlation_id,
              NEW.causation_id)
          IS DISTINCT FROM
          ROW(OLD.position, OLD.event_id, OLD.aggregate_type, OLD.aggregate_id, OLD.aggregate_version,
              OLD.event_type, OLD.schema_version, OLD.data, OLD.occurred_at, OLD.correlation_id,
              OLD.causation_id) THEN
        RAISE EXCEPTION 'events is append-only: only published_at may be set, once'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("ledger", "0008_outbox_progress")]

    # Backwards these run last to first: the column and its index come back before the trigger that lets
    # published_at be set, which 0008's way back then does.
    operations = [
        migrations.RunSQL(FORWARD, BACKWARD),
        migrations.RemoveIndex(model_name="event", name="events_unpublished_idx"),
        migrations.RemoveField(model_name="event", name="published_at"),
    ]
