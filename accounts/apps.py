from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from allauth.account import signals as account_signals
        from allauth.mfa import signals as mfa_signals
        from django.contrib.auth import get_user_model
        from django.contrib.auth import signals as auth_signals
        from django.db.models.signals import post_save

        from accounts import checks, signals  # noqa: F401 (checks: registers them)

        post_save.connect(
            signals.profile_create_for_new_user,
            sender=get_user_model(),
            dispatch_uid="accounts.profile_create_for_new_user",
        )
        from allauth.account.models import EmailAddress
        from allauth.mfa.models import Authenticator
        from allauth.usersessions.models import UserSession
        from django.db.models.signals import post_delete

        from accounts.models import SecurityEvent

        for model in (SecurityEvent, UserSession, Authenticator, EmailAddress):
            for signal in (post_save, post_delete):
                signal.connect(
                    signals.on_security_data_changed,
                    sender=model,
                    dispatch_uid=f"accounts.security_changed.{model.__name__}",
                )
        for signal, receiver in [
            (auth_signals.user_logged_in, signals.on_user_logged_in),
            (auth_signals.user_logged_out, signals.on_user_logged_out),
            (account_signals.password_changed, signals.on_password_changed),
            (account_signals.password_set, signals.on_password_changed),
            (account_signals.password_reset, signals.on_password_reset),
            (account_signals.email_changed, signals.on_email_changed),
            (mfa_signals.authenticator_added, signals.on_authenticator_added),
            (mfa_signals.authenticator_removed, signals.on_authenticator_removed),
            (mfa_signals.authenticator_reset, signals.on_authenticator_reset),
            (
                mfa_signals.authentication_failed,
                signals.on_mfa_authentication_failed,
            ),
        ]:
            signal.connect(receiver, dispatch_uid=f"accounts.{receiver.__name__}")
