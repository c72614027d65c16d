from django.apps import AppConfig


class TokensConfig(AppConfig):
    name = "tokens"
    verbose_name = "Tokens"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from tokens.models import Token
        from tokens.signals import token_list_changed

        for signal in (post_save, post_delete):
            signal.connect(
                token_list_changed,
                sender=Token,
                dispatch_uid=f"tokens.token_list_changed.{signal}",
            )
