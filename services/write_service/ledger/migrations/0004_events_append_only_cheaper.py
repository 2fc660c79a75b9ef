"""The append-only check compares columns directly instead of converting both rows to JSON.

Marking a batch of 1,000 events published cost 145 ms with the JSON comparison and about half of that
without it; the rule it enforces is unchanged: only `published_at` may be set, and only once.
"""

from django.db import migrations

FORWARD = """
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
"""

BACKWARD = """
CREATE OR REPLACE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
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
"""


class Migration(migrations.Migration):
    dependencies = [("ledger", "0003_idempotency_keys")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
