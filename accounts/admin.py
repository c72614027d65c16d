from django.contrib import admin
from django.utils.html import format_html

from accounts.models import Profile


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ["avatar_thumbnail", "user", "updated_at"]
    list_select_related = ["user"]
    search_fields = ["user__username", "user__email"]
    readonly_fields = ["avatar_preview", "updated_at"]
    fields = ["user", "avatar_preview", "avatar", "updated_at"]
    raw_id_fields = ["user"]

    @admin.display(description="Avatar")
    def avatar_thumbnail(self, profile: Profile) -> str:
        return format_html(
            '<img src="{}" alt="Avatar of {}" width="32" height="32">',
            profile.avatar.url,
            profile.user,
        )

    @admin.display(description="Current avatar")
    def avatar_preview(self, profile: Profile) -> str:
        return format_html(
            '<img src="{}" alt="Avatar of {}" width="100" height="100">',
            profile.avatar.url,
            profile.user,
        )
