"""Withdrawals and saved addresses carry a memo (a destination tag), and an
address format says whether its network takes one.

Every new column has a default in the database, so the code before it, which
inserts the columns it knows, still requests withdrawals, saves addresses and
adds formats while a rolling upgrade runs (with no memo, as before). A saved
address is unique with its memo: two customers of one exchange share its
address. XRP Ledger formats (checked as base58check_xrp) ask for a destination
tag from now on; formats of other networks that need a memo are given one in
the admin.
"""

import trading.addresses
from django.db import migrations, models


def xrp_destination_tags(apps, schema_editor):
    """XRP Ledger formats added before memos ask for a destination tag, as
    exchanges on the XRP Ledger share one address among their customers; a
    format staff already gave a memo keeps it."""
    AddressFormat = apps.get_model("trading", "AddressFormat")
    AddressFormat.objects.filter(checksum="base58check_xrp", memo_name="").update(
        memo_name="Destination tag",
        memo_pattern="[0-9]{1,10}",
        memo_description="a number of 1 to 10 digits",
    )


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
                "match, e.g. [0-9]{1,10} for XRP Ledger destination tags. "
                "Empty: any printable ASCII text up to 256 characters. Needs a "
                "memo name.",
                max_length=500,
                validators=[trading.addresses.address_pattern_validate],
            ),
        ),
        migrations.AddField(
            model_name="addressformat",
            name="memo_description",
            field=models.CharField(
                blank=True,
                db_default="",
                default="",
                help_text="How the memo looks, completing “a destination tag "
                "is …” in the message a wrong memo gets, e.g. a number of 1 to "
                "10 digits. Empty: the message quotes the memo pattern.",
                max_length=150,
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
        migrations.RunPython(xrp_destination_tags, migrations.RunPython.noop),
    ]
