from django.contrib import admin
from django.utils.html import format_html

from tokens.models import Token


@admin.register(Token)
class TokenAdmin(admin.ModelAdmin):
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
        "created_at",
        "updated_at",
    ]

    @admin.display(description="Logo")
    def logo_thumbnail(self, token: Token) -> str:
        if not token.logo:
            return "—"
        # url() is built locally by every storage: no request per row.
        return format_html(
            '<img src="{}" alt="{} logo" width="32" height="32">',
            token.logo.url,
            token.symbol,
        )

    @admin.display(description="Current logo")
    def logo_preview(self, token: Token) -> str:
        if not token.logo:
            return "No logo yet."
        return format_html(
            '<img src="{}" alt="{} logo" width="100" height="100">',
            token.logo.url,
            token.symbol,
        )
