from django.conf import settings
from django.db import models

from storage.fields import ProcessedImageField

DEFAULT_AVATAR = "default_avatar.jpg"


class Profile(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile"
    )
    avatar = ProcessedImageField(
        upload_to="profile_pics/", default=DEFAULT_AVATAR, size=300, max_length=255
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Profile of {self.user}"

    @property
    def has_custom_avatar(self) -> bool:
        return bool(self.avatar) and self.avatar.name != DEFAULT_AVATAR
