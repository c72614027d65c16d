from collections import Counter, defaultdict
from collections.abc import Iterable

from django.contrib import admin
from django.db import models
from django.db.models import Count

from core.forms import ChangesOnPageForm
from core.locks import unique_value_serialize
from core.widgets import PlainNumberInput
from storage.html import image_tag
from tokens.models import Token
from tokens.services import token_create, token_update

# The symbol and the decimals say what every amount ever recorded for the
# token means, so they are set once, when the token is added. A token with
# another symbol or other decimals is a new token.
FIXED_ONCE_ADDED = ["symbol", "decimals"]


class TokenForm(ChangesOnPageForm):
    class Meta:
        model = Token
        fields = [
            "symbol",
            "name",
            "decimals",
            "description",
            "logo",
            "is_active",
            "withdrawal_daily_limit",
        ]
        # Shown under the input on the add page and under the value on a
        # change page (the admin takes a read-only field's help from here).
        help_texts = {
            "symbol": "Fixed once the token is added: it names the token in its "
            "markets (BTC-USDT), in URLs and to API clients.",
            "decimals": "Digits after the point of the token's smallest unit. "
            "Fixed once the token is added: every balance, order and ledger "
            "entry of the token is counted in that unit. A token with other "
            "decimals is a new token.",
        }

    def clean(self):
        data = super().clean()
        if self.instance._state.adding and data.get("symbol"):
            # Before the unique check: of two staff adding one symbol at once,
            # the second waits here for the first's commit and gets the
            # usual "already exists" error, not a failed insert. Held until
            # the admin's transaction ends, after the insert.
            unique_value_serialize(model=Token, symbol=data["symbol"])
        return data


@admin.register(Token)
class TokenAdmin(admin.ModelAdmin):
    form = TokenForm
    formfield_overrides = {models.DecimalField: {"widget": PlainNumberInput}}
    list_display = ["logo_thumbnail", "symbol", "name", "decimals", "is_active"]
    list_display_links = ["logo_thumbnail", "symbol"]
    list_filter = ["is_active"]
    search_fields = ["symbol", "name"]
    readonly_fields = ["logo_preview", "created_at", "updated_at"]
    fields = [
        "symbol",
        "name",
        "decimals",
        "description",
        "logo_preview",
        "logo",
        "is_active",
        "withdrawal_daily_limit",
        "created_at",
        "updated_at",
    ]

    def get_readonly_fields(self, request, obj=None):
        readonly = super().get_readonly_fields(request, obj)
        if obj is None:
            return readonly
        return [*FIXED_ONCE_ADDED, *readonly]

    def save_model(self, request, obj, form, change):
        # The form's "Clear" box gives False for the logo: no logo.
        values = {
            name: (value or None) if name == "logo" else value
            for name, value in form.cleaned_data.items()
        }
        if change:
            # Only what this staff member changed on the page: another may
            # have saved the token since it was opened.
            changes = {name: values[name] for name in form.changed_data}
            token_update(token=obj, changes=changes)
            return
        created = token_create(**values)
        obj.pk = created.pk
        obj.refresh_from_db()

    def get_deleted_objects(self, objs, request):
        # Rows that keep a token's amounts (balances, the ledger) or trade it
        # (markets) protect it. Django would list each such row, and call it
        # a permission the staff member lacks, since those admins delete
        # nothing; the templates say what uses the token and what to do.
        in_use = _tokens_in_use(objs)
        if in_use:
            return [], {}, set(), in_use
        return super().get_deleted_objects(objs, request)

    @admin.display(description="Logo")
    def logo_thumbnail(self, token: Token) -> str:
        if not token.logo:
            return "—"
        # url() is built locally by every storage: no request per row.
        return image_tag(token.logo.url, alt=f"{token.symbol} logo", size=32)

    @admin.display(description="Current logo")
    def logo_preview(self, token: Token) -> str:
        if not token.logo:
            return "No logo yet."
        return image_tag(token.logo.url, alt=f"{token.symbol} logo", size=100)


def _tokens_in_use(tokens: Iterable[Token]) -> list[str]:
    """For each of ``tokens`` that rows protect from deletion, a sentence
    counting them: "BTC is used by 1 market and 3 balances." """
    tokens = list(tokens)
    uses: dict[int, Counter] = defaultdict(Counter)
    for relation in Token._meta.get_fields(include_hidden=True):
        reverse = relation.auto_created and not relation.concrete
        if not reverse or relation.on_delete not in (models.PROTECT, models.RESTRICT):
            continue
        name = relation.field.name
        rows = (
            relation.related_model._base_manager.filter(**{f"{name}__in": tokens})
            .values(name)
            .annotate(count=Count("pk"))
            .order_by()
        )
        for row in rows:
            uses[row[name]][relation.related_model._meta] += row["count"]
    sentences = []
    for token in tokens:
        if counts := uses.get(token.pk):
            named = [_counted(count, opts) for opts, count in counts.items()]
            listed = ", ".join(named[:-1]) + " and " if len(named) > 1 else ""
            sentences.append(f"{token.symbol} is used by {listed}{named[-1]}.")
    return sentences


def _counted(count: int, opts) -> str:
    return f"{count} {opts.verbose_name if count == 1 else opts.verbose_name_plural}"
