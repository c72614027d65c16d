from django.apps import AppConfig


class StorageConfig(AppConfig):
    name = "storage"
    verbose_name = "Storage"

    def ready(self) -> None:
        from django.core.files.storage import storages
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
        # The storage settings are validated in one place, MinIOStorage's
        # constructor (storage.config), which contacts nothing: building the
        # configured storages here stops every process at start-up on a bad
        # MINIO_* value, naming the variable.
        for alias in ("default", "private"):
            storages[alias]
