"""Ledger entries name their user's order where the transaction's order may
be another user's (a match holds the taker's and its makers' entries).

Entries written before have none; the ledger export leaves a maker's order
empty for them rather than name the taker's. The column is null, so adding it
rewrites nothing.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("trading", "0011_order_client_request"),
    ]

    operations = [
        migrations.AddField(
            model_name="ledgerentry",
            name="order",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="trading.order",
            ),
        ),
    ]
