from django.apps import AppConfig


class TradingConfig(AppConfig):
    name = "trading"
    verbose_name = "Trading"

    def ready(self) -> None:
        from allauth.account.signals import password_changed

        from trading.signals import on_password_changed_offer_key_revocation

        password_changed.connect(
            on_password_changed_offer_key_revocation,
            dispatch_uid="trading.on_password_changed_offer_key_revocation",
        )
