"""Idempotency keys belong to the API client that sent them: the primary key becomes (client, key), where
`client` is the SHA-256 of the bearer token.

Django cannot change a primary key into a composite one in place, so the table is renamed aside, created
again and refilled. Keys stored before had no client and answered every token alike; each is copied to every
token configured now (CQRS_API_TOKENS), so a retry that spans this migration still finds its first answer.
"""

import hashlib

from django.conf import settings
from django.db import migrations, models

SET_ASIDE = """
ALTER TABLE idempotency_keys RENAME TO idempotency_keys_unscoped;
ALTER INDEX idempotency_keys_pkey RENAME TO idempotency_keys_unscoped_pkey;
ALTER TABLE idempotency_keys_unscoped
    RENAME CONSTRAINT idempotency_keys_status_code_check TO idempotency_keys_unscoped_status_code_check;
"""

COPY_FOR_EACH_CLIENT = """
INSERT INTO idempotency_keys (client, key, fingerprint, status_code, body, headers, created_at)
SELECT client, key, fingerprint, status_code, body, headers, created_at
FROM idempotency_keys_unscoped CROSS JOIN unnest(%s::varchar[]) AS client
"""


def copy_for_each_client(apps, schema_editor) -> None:
    # The hash of ledger.api.authentication.client_id_of, repeated here: a migration must not change with the
    # application code.
    clients = sorted(hashlib.sha256(token.encode()).hexdigest() for token in settings.API_TOKENS)
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(COPY_FOR_EACH_CLIENT, [clients])


class Migration(migrations.Migration):
    dependencies = [("ledger", "0004_events_append_only_cheaper")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(SET_ASIDE)],
            state_operations=[migrations.DeleteModel(name="IdempotencyKey")],
        ),
        migrations.CreateModel(
            name="IdempotencyKey",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey("client", "key", blank=True, editable=False, serialize=False),
                ),
                ("client", models.CharField(max_length=64)),
                ("key", models.CharField(max_length=255)),
                ("fingerprint", models.CharField(max_length=64)),
                ("status_code", models.PositiveSmallIntegerField(null=True)),
                ("body", models.BinaryField(null=True)),
                ("headers", models.JSONField(default=dict)),
                ("created_at", models.DateTimeField()),
            ],
            options={
                "db_table": "idempotency_keys",
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("key__regex", "^.{1,255}$")), name="idempotency_keys_key_length"
                    )
                ],
            },
        ),
        migrations.RunPython(copy_for_each_client),
        migrations.RunSQL("DROP TABLE idempotency_keys_unscoped"),
    ]
