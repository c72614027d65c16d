from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import storages
from django.core.management.base import BaseCommand, CommandError

from storage.backends import MinIOStorage
from storage.exceptions import StorageUnavailable
from storage.services import (
    BucketSetupFailed,
    bucket_setup,
    default_avatar_files,
)


class Command(BaseCommand):
    help = (
        "Check the object store (connection, credentials, bucket) and bootstrap "
        "it: create the bucket, set its access policy for the URL mode (its own "
        "statement only), a rule aborting unfinished uploads after a day, and "
        "upload the default avatar when missing or stored with other headers "
        "(from MEDIA_ROOT, else the repository's media/). Safe to run any "
        "number of times; fails when a kept policy statement lets anyone reach "
        "private/, or the bucket has no default avatar and there is none to "
        "upload."
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
        try:
            report = bucket_setup(
                storage=storage, default_avatar=default_avatar_files()
            )
        except StorageUnavailable as exc:
            raise CommandError(str(exc)) from exc
        except BucketSetupFailed as exc:
            self._lines(exc.report)
            raise CommandError(str(exc)) from exc
        self._lines(report)
        self.stdout.write(self.style.SUCCESS("Object storage is ready."))

    def _lines(self, report) -> None:
        for line in report.lines:
            self.stdout.write(line)
