from django.apps import AppConfig


class TradingConfig(AppConfig):
    name = "trading"
    verbose_name = "Trading"

    def ready(self) -> None:
        from allauth.account.signals import password_changed, password_reset
        from allauth.mfa.signals import authenticator_removed

        from trading import signals

        for signal, receiver in [
            (password_changed, signals.on_password_changed_offer_key_revocation),
            (password_reset, signals.on_password_changed_offer_key_revocation),
            (password_reset, signals.on_password_reset_mail_keys),
            (authenticator_removed, signals.on_authenticator_removed_mail_keys),
        ]:
            signal.connect(receiver, dispatch_uid=f"trading.{receiver.__name__}")
