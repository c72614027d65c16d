"""The object store's readiness check (``/readyz/``, exchange.health)."""

import dataclasses

from django.core.files.storage import storages
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable

from storage.backends import MinIOStorage
from storage.exceptions import StorageUnavailable


@dataclasses.dataclass
class ObjectStore(HealthCheck):
    """The bucket answers a HEAD (one request; nothing written)."""

    def run(self) -> None:
        storage = storages["default"]
        if not isinstance(storage, MinIOStorage):
            return  # files on local disk: nothing remote to reach
        try:
            with storage.errors("check the bucket"):
                exists = storage.client.bucket_exists(bucket_name=storage.bucket_name)
        except StorageUnavailable as exc:
            raise ServiceUnavailable(str(exc)) from exc
        if not exists:
            raise ServiceUnavailable(
                f"bucket '{storage.bucket_name}' does not exist: run setup_minio"
            )

    label = "object_store"
