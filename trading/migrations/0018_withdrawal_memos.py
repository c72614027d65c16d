"""Withdrawals and saved addresses carry a memo (a destination tag), and an
address format says whether its network takes one.

Every new column has a default in the database, so the code before it, which
inserts the columns it knows, still requests withdrawals, saves addresses and
adds formats while a rolling upgrade runs (with no memo, as before). A saved
address is unique with its memo: two customers of one exchange share its
address.
"""

import trading.addresses
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("trading", "0017_withdrawal_network"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="savedaddress",
            name="saved_address_unique",
        ),
        migrations.AddField(
            model_name="addressformat",
            name="memo_name",
            field=models.CharField(
                blank=True,
                db_default="",
                default="",
                help_text="For a network whose transactions carry a memo that "
                "tells the recipient's exchange or custodian which customer to "
                "credit: its name there, e.g. Destination tag (XRP Ledger) or "
                "Memo (Stellar, Cosmos). Users then give one with each "
                "withdrawal, or say that the recipient needs none. Empty: this "
                "network takes no memo.",
                max_length=40,
            ),
        ),
        migrations.AddField(
            model_name="addressformat",
            name="memo_pattern",
            field=models.CharField(
                blank=True,
                db_default="",
                default="",
                help_text="A Python regular expression the whole memo must "
                "match, e.g. [0-9]{1,10} for XRP Ledger destination tags; a "
                "wrong memo's message quotes it. Empty: any printable ASCII "
                "text up to 256 characters. Needs a memo name.",
                max_length=500,
                validators=[trading.addresses.address_pattern_validate],
            ),
        ),
        migrations.AddField(
            model_name="savedaddress",
            name="memo",
            field=models.CharField(
                blank=True,
                db_default="",
                default="",
                help_text="The memo or destination tag saved with the address; "
                "empty when none.",
                max_length=256,
            ),
        ),
        migrations.AddField(
            model_name="withdrawal",
            name="memo",
            field=models.CharField(
                blank=True,
                db_default="",
                default="",
                help_text="The memo or destination tag sent with the coins, "
                "which the recipient's exchange needs to credit them; empty "
                "when none.",
                max_length=256,
            ),
        ),
        migrations.AddConstraint(
            model_name="addressformat",
            constraint=models.CheckConstraint(
                condition=~models.Q(memo_name="") | models.Q(memo_pattern=""),
                name="address_format_memo_pattern_named",
                violation_error_message="A memo pattern needs a memo name: name "
                "the memo (like Destination tag), or leave the pattern empty.",
            ),
        ),
        migrations.AddConstraint(
            model_name="savedaddress",
            constraint=models.UniqueConstraint(
                fields=("user", "token", "address", "memo"),
                name="saved_address_unique",
            ),
        ),
    ]
