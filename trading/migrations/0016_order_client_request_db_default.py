"""The client request column gets a database default.

0011 added it with a default that Django drops once the column is filled, so
the code before 0011, which inserts the columns it knows, failed every order
(null in a column that is not null) while a rolling upgrade ran. With the
default in the database, its orders get an empty request, as any order
without a client order id has.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("trading", "0015_withdrawal_processing"),
    ]

    operations = [
        migrations.AlterField(
            model_name="order",
            name="client_request",
            field=models.CharField(
                blank=True, db_default="", default="", editable=False, max_length=64
            ),
        ),
    ]
