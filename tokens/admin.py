from django.contrib import admin

from storage.html import image_tag
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
        "withdrawal_daily_limit",
        "created_at",
        "updated_at",
    ]

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
