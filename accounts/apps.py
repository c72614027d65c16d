from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.core.signals import setting_changed
        from django.db.models.signals import post_save
        from django.utils.autoreload import file_changed

        from accounts.page_cache import profile_pages_clear
        from accounts.signals import profile_create_for_new_user

        post_save.connect(
            profile_create_for_new_user,
            sender=get_user_model(),
            dispatch_uid="accounts.profile_create_for_new_user",
        )
        # Stored pages were rendered with the templates and settings of their
        # time: tests change settings, and in development templates are
        # edited while the server runs.
        setting_changed.connect(
            profile_pages_clear, dispatch_uid="accounts.profile_pages_clear.settings"
        )
        file_changed.connect(
            profile_pages_clear, dispatch_uid="accounts.profile_pages_clear.files"
        )
