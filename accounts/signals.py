"""Side concerns of the accounts app, connected in ``AccountsConfig.ready``:
a profile for every user, and the security log, its e-mails and the ending of
other sessions after a credential changes."""

from allauth.core import ratelimit

from accounts.models import Profile, SecurityEvent
from accounts.selectors import security_overview_changed
from accounts.services import (
    security_event_record,
    sessions_end_others,
    sign_in_record,
)

Kind = SecurityEvent.Kind


def profile_create_for_new_user(sender, instance, created: bool, raw: bool, **kwargs):
    # Every user has a profile, however the user was made (sign-up, admin,
    # createsuperuser, a script); fixtures (raw) bring their own rows.
    if created and not raw:
        Profile.objects.get_or_create(user=instance)


def on_user_logged_in(sender, request, user, **kwargs) -> None:
    if request is not None:
        sign_in_record(request=request, user=user)


def on_user_logged_out(sender, request, user, **kwargs) -> None:
    if user is not None:
        security_event_record(user=user, kind=Kind.SIGN_OUT, request=request)


def on_password_changed(sender, request, user, **kwargs) -> None:
    security_event_record(user=user, kind=Kind.PASSWORD_CHANGED, request=request)
    sessions_end_others(request=request, user=user)


def on_password_reset(sender, request, user, **kwargs) -> None:
    security_event_record(user=user, kind=Kind.PASSWORD_RESET, request=request)
    sessions_end_others(request=request, user=user)
    # The owner proved it by e-mail: lift the lock of wrong passwords, as
    # allauth lifts its own. Not that of wrong codes (accounts.adapter
    # .AccountAdapter.account_attempt_count): the mailbox is no second factor.
    ratelimit.clear(request, action="login_failed_account", key=f"user:{user.pk}")


def on_email_changed(sender, request, user, from_email_address, to_email_address, **kw):
    # allauth also sends this when the sign-up address is first verified:
    # that is no change.
    if from_email_address is None or from_email_address.email == to_email_address.email:
        return
    security_event_record(
        user=user,
        kind=Kind.EMAIL_CHANGED,
        request=request,
        detail=f"{from_email_address.email} → {to_email_address.email}",
    )


def on_authenticator_added(sender, request, user, authenticator, **kwargs) -> None:
    if authenticator.type == authenticator.Type.TOTP:
        security_event_record(user=user, kind=Kind.MFA_ENABLED, request=request)
        sessions_end_others(request=request, user=user)


def on_authenticator_removed(sender, request, user, authenticator, **kwargs) -> None:
    if authenticator.type == authenticator.Type.TOTP:
        # Staff remove one in the admin (accounts.admin): the log says who,
        # and keeps staff's address and browser out of the user's log.
        remover = request.user
        by_staff = remover.pk != user.pk
        security_event_record(
            user=user,
            kind=Kind.MFA_DISABLED,
            request=None if by_staff else request,
            detail=f"by staff {remover.get_username()}" if by_staff else "",
        )
        sessions_end_others(request=request, user=user)


def on_mfa_authentication_failed(sender, request, user, authenticator, **kwargs):
    # The code counts against the account already, at log-in and when
    # confirming who you are (AccountAdapter.account_attempt_count).
    security_event_record(
        user=user,
        kind=Kind.SIGN_IN_FAILED,
        request=request,
        detail="wrong two-factor code",
    )


def on_authenticator_reset(sender, request, user, authenticator, **kwargs) -> None:
    if authenticator.type == authenticator.Type.RECOVERY_CODES:
        security_event_record(
            user=user, kind=Kind.RECOVERY_CODES_REGENERATED, request=request
        )


def on_security_data_changed(sender, instance, **kwargs) -> None:
    """A row the profile's security overview shows was written or deleted."""
    security_overview_changed(user_id=instance.user_id)
