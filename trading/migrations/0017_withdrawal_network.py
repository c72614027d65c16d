"""Withdrawals record the network their coins go out on.

The column has a default in the database, so the code before it, which
inserts the columns it knows, still requests withdrawals while a rolling
upgrade runs (they get an empty network, as before).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("trading", "0016_order_client_request_db_default"),
    ]

    operations = [
        migrations.AddField(
            model_name="withdrawal",
            name="network",
            field=models.CharField(
                blank=True,
                db_default="",
                default="",
                help_text="The address format's network the coins go out on, as "
                "named when requested; empty when the token had no formats.",
                max_length=60,
            ),
        ),
    ]
