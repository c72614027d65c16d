from django.apps import AppConfig


class StorageConfig(AppConfig):
    name = "storage"
    verbose_name = "Storage"

    def ready(self) -> None:
        from django_cleanup.signals import cleanup_post_delete

        from storage.signals import deletion_failed_queue

        cleanup_post_delete.connect(
            deletion_failed_queue, dispatch_uid="storage_deletion_failed_queue"
        )
