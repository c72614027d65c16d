class StorageUnavailable(Exception):
    """The object store could not do what was asked.

    Raised by :class:`storage.backends.MinIOStorage` for every failure that is
    not the caller's fault: the server refused the connection or timed out,
    answered with a 5xx, rejected the credentials, or the bucket could not be
    created. The message says what to check. A missing object is not this
    error: reading one raises ``FileNotFoundError``, as the file-system
    storage does.

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
