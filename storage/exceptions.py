class StorageUnavailable(Exception):
    """The object store could not do what was asked.

    Raised by :class:`storage.backends.MinIOStorage` for every failure that is
    not the caller's fault: the server refused the connection or timed out,
    answered with a 5xx, rejected the credentials, or the bucket could not be
    created; and, as ``StorageFull``, by
    :class:`storage.filesystem.FileSystemStorage` when its disk is full. The
    message says what to check. A missing object is not this error: reading one
    raises ``FileNotFoundError``, as the file-system storage does.

    Views catch it and answer with a message or a 503, never a traceback.
    """

    code = "storage_unavailable"

    def __init__(
        self,
        message: str,
        *,
        operation: str = "",
        endpoint: str = "",
        bucket: str = "",
        key: str = "",
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.operation = operation
        self.endpoint = endpoint
        self.bucket = bucket
        self.key = key
        self.reason = reason


class StorageFull(StorageUnavailable):
    """The local disk has no room left for the file (ENOSPC, or a quota).

    Raised by :class:`storage.filesystem.FileSystemStorage` (MEDIA_ROOT,
    PRIVATE_MEDIA_ROOT) once what was written of the file is removed again.
    Views tell the user the server's disk is full; anything else that catches
    ``StorageUnavailable`` handles it as an outage of the store.
    """

    code = "storage_full"


class UploadThrottled(Exception):
    """The user has made as many image uploads as the window allows.

    Raised before the upload is decoded; ``retry_after`` is the number of
    seconds until the next one is accepted.
    """

    code = "upload_throttled"

    def __init__(self, *, retry_after: int) -> None:
        minutes = max(1, -(-retry_after // 60))
        super().__init__(
            "You have uploaded too many pictures in a short time. "
            f"Please try again in {minutes} minute{'s' if minutes != 1 else ''}."
        )
        self.retry_after = retry_after


class ImageDecodersBusy(Exception):
    """Every image decode slot of this host is taken (``IMAGE_DECODE_SLOTS``).

    Raised before the upload is decoded, so nothing was written. The upload
    form fields show the message on the field; the upload views answer 503
    with Retry-After.
    """

    code = "image_decoders_busy"
    retry_after = 5

    def __init__(self) -> None:
        super().__init__(
            "Many images are being processed right now; "
            "please try again in a few seconds."
        )
