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


class SecurityEvent(models.Model):
    """One line of a user's security log: what happened, when, from where.

    The user sees their own on the profile; staff filter them in the admin.
    """

    class Kind(models.TextChoices):
        SIGN_IN = "sign_in", "Signed in"
        SIGN_IN_FAILED = "sign_in_failed", "Failed sign-in"
        SIGN_OUT = "sign_out", "Signed out"
        PASSWORD_CHANGED = "password_changed", "Password changed"
        PASSWORD_RESET = "password_reset", "Password reset by e-mail"
        EMAIL_CHANGED = "email_changed", "E-mail address changed"
        MFA_ENABLED = "mfa_enabled", "Two-factor authentication turned on"
        MFA_DISABLED = "mfa_disabled", "Two-factor authentication turned off"
        RECOVERY_CODES_REGENERATED = (
            "recovery_codes_regenerated",
            "Recovery codes regenerated",
        )
        SESSIONS_ENDED = "sessions_ended", "Other sessions ended"
        API_KEY_CREATED = "api_key_created", "API key created"
        API_KEY_REVOKED = "api_key_revoked", "API key revoked"
        WITHDRAWAL_REQUESTED = "withdrawal_requested", "Withdrawal requested"
        ADDRESS_SAVED = "address_saved", "Withdrawal address saved"
        ADDRESS_REMOVED = "address_removed", "Saved withdrawal address removed"
        WITHDRAWAL_POLICY_CHANGED = (
            "withdrawal_policy_changed",
            "Withdrawal address setting changed",
        )

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="security_events",
    )
    kind = models.CharField(max_length=40, choices=Kind.choices)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    detail = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["user", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.user})"
