from django.apps import AppConfig


class StorageConfig(AppConfig):
    name = "storage"
    verbose_name = "Storage"

    def ready(self) -> None:
        from django.core.signals import setting_changed
        from django_cleanup.signals import cleanup_post_delete

        from storage import checks  # noqa: F401 (registers the checks)
        from storage.private import private_storage_reset
        from storage.signals import deletion_failed_queue

        cleanup_post_delete.connect(
            deletion_failed_queue, dispatch_uid="storage_deletion_failed_queue"
        )
        setting_changed.connect(
            private_storage_reset, dispatch_uid="storage_private_storage_reset"
        )
