"""Makes `events` append-only in the database itself and wakes the relay on commit.

- Any DELETE, and any UPDATE other than setting `published_at` once, raises: the event store is immutable
  whatever code (or person) talks to it. TRUNCATE stays possible for test teardown and operators.
- A statement-level trigger sends NOTIFY on channel `cqrs_events`; PostgreSQL delivers it at commit, so the
  relay (LISTEN) publishes right after the transaction instead of on its next poll.
"""

from django.db import migrations

FORWARD = """
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'events is append-only: DELETE refused' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.published_at IS NOT NULL
       OR (to_jsonb(NEW) - 'published_at') IS DISTINCT FROM (to_jsonb(OLD) - 'published_at') THEN
        RAISE EXCEPTION 'events is append-only: only published_at may be set, once'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();

CREATE FUNCTION events_notify_appended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cqrs_events', '');
    RETURN NULL;
END $$;

CREATE TRIGGER events_notify_appended
    AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify_appended();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS events_notify_appended ON events;
DROP FUNCTION IF EXISTS events_notify_appended();
DROP TRIGGER IF EXISTS events_append_only ON events;
DROP FUNCTION IF EXISTS events_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
