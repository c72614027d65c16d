from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import storages
from django.core.management.base import BaseCommand, CommandError

from storage.backends import MinIOStorage
from storage.exceptions import StorageUnavailable
from storage.services import bucket_setup


class Command(BaseCommand):
    help = (
        "Check the object store (connection, credentials, bucket) and bootstrap "
        "it: create the bucket, set its access policy for the URL mode and upload "
        "the default avatar. Safe to run any number of times."
    )

    def handle(self, *args, **options) -> None:
        storage = storages["default"]
        if not isinstance(storage, MinIOStorage):
            self.stdout.write(
                "USE_MINIO is false: the app keeps files in MEDIA_ROOT and "
                "PRIVATE_MEDIA_ROOT. "
                "Checking the MINIO_* settings anyway."
            )
            try:
                storage = MinIOStorage()
            except ImproperlyConfigured as exc:
                raise CommandError(str(exc)) from exc
        avatar = Path(settings.BASE_DIR) / "media" / "default_avatar.jpg"
        try:
            report = bucket_setup(storage=storage, default_avatar=avatar)
        except StorageUnavailable as exc:
            raise CommandError(str(exc)) from exc
        for line in report.lines:
            self.stdout.write(line)
        self.stdout.write(self.style.SUCCESS("Object storage is ready."))
