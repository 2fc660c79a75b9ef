"""The depositor's reference on statement lines (MoneyDeposited version 2).

Nullable and without a default, so adding it rewrites nothing: lines projected before it, and deposits
stored as version 1, have none. The rebuild's shadow tables are made `LIKE` the live ones, so they have it.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("projections", "0002_replica_cursor"),
    ]

    operations = [
        migrations.AddField(
            model_name="statementline",
            name="reference",
            field=models.TextField(null=True),
        ),
    ]
