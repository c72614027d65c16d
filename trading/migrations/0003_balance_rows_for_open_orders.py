"""Both balance rows of its market for every user with an open order.

``order_place`` now creates them before it takes the market's lock
(``trading.locks.balances_ensure``), so that matching can lock every row it
needs in one statement. Orders placed before that may lack the row of the
token they would receive; this creates the missing ones, empty.
"""

from django.db import migrations


def balance_rows_create(apps, schema_editor):
    Balance = apps.get_model("trading", "Balance")
    Order = apps.get_model("trading", "Order")
    pairs = Order.objects.filter(status="open").values_list(
        "user_id", "market__base_id", "market__quote_id"
    )
    wanted = {
        (user_id, token_id)
        for user_id, base_id, quote_id in pairs.distinct()
        for token_id in (base_id, quote_id)
    }
    Balance.objects.bulk_create(
        [Balance(user_id=user_id, token_id=token_id) for user_id, token_id in wanted],
        ignore_conflicts=True,
        batch_size=500,
    )


class Migration(migrations.Migration):
    dependencies = [("trading", "0002_apikey")]

    operations = [
        migrations.RunPython(balance_rows_create, migrations.RunPython.noop),
    ]
