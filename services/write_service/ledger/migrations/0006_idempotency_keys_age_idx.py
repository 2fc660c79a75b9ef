"""An index on the keys' age, so `purge_idempotency_keys` reads only the expired keys, not the whole table."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("ledger", "0005_idempotency_keys_per_client")]

    operations = [
        migrations.AddIndex(
            model_name="idempotencykey",
            index=models.Index(fields=["created_at"], name="idempotency_keys_age_idx"),
        ),
    ]
