from django.contrib import admin

from accounts.models import Profile
from storage.html import image_tag


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
        return image_tag(profile.avatar.url, alt=f"Avatar of {profile.user}", size=32)

    @admin.display(description="Current avatar")
    def avatar_preview(self, profile: Profile) -> str:
        return image_tag(profile.avatar.url, alt=f"Avatar of {profile.user}", size=100)
