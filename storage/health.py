"""The object store's readiness check (``/readyz/``, exchange.health)."""

import dataclasses

from django.core.files.storage import storages
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable
from minio.error import S3Error

from storage.backends import MinIOStorage
from storage.bucket import NotAnS3Api
from storage.exceptions import StorageUnavailable
from storage.services import PROBE_PREFIX

# Never written: an S3 API answers NoSuchKey, or NoSuchBucket without the bucket.
ABSENT_KEY = f"{PROBE_PREFIX}absent"


@dataclasses.dataclass
class ObjectStore(HealthCheck):
    """The bucket answers a GET of a key that does not exist (one request;
    nothing written).

    Not a HEAD of the bucket: a web server that answers 200 to everything
    (MINIO_ENDPOINT on MinIO's console port) passes that, but serves the
    missing key where an S3 API answers with an error naming what is missing.
    """

    def run(self) -> None:
        storage = storages["default"]
        if not isinstance(storage, MinIOStorage):
            return  # files on local disk: nothing remote to reach
        try:
            with storage.errors("check the bucket"):
                answer = storage.client.get_object(
                    bucket_name=storage.bucket_name, object_name=ABSENT_KEY
                )
                answer.close()
                answer.release_conn()
                raise NotAnS3Api(f"it served '{ABSENT_KEY}', which does not exist")
        except S3Error as exc:  # only the "no such ..." codes come through
            if exc.code == "NoSuchBucket":
                raise ServiceUnavailable(
                    f"bucket '{storage.bucket_name}' does not exist: run setup_minio"
                ) from None
        except StorageUnavailable as exc:
            raise ServiceUnavailable(str(exc)) from exc

    label = "object_store"
