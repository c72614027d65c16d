from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_save

        from accounts.signals import profile_create_for_new_user

        post_save.connect(
            profile_create_for_new_user,
            sender=get_user_model(),
            dispatch_uid="accounts.profile_create_for_new_user",
        )
