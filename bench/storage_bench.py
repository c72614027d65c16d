"""MinIOStorage and django-storages' S3Storage against the raw ``minio`` client.

One local SeaweedFS server (``scripts/s3_server.py``) serves the run, with one
bucket per backend created before anything is timed. For each payload size every
backend saves, opens and reads, checks and deletes its own objects; the
backends take turns within each round, in a fresh random order for every
operation, so that drift of the machine or the server and the after-effects of
one backend on the next affect them all alike. ``url`` never touches the network and
takes about a microsecond, so it is timed in batches of calls.

HTTP requests are counted in a separate, untimed pass, twice over: by each
client's own hook (the minio clients' urllib3 ``PoolManager.urlopen``, botocore's
``before-send`` event) and on the wire (every attempt urllib3 sends, whoever
the client), so that a retry or a hidden request cannot go unnoticed.

Run alone with ``python -m bench.storage_bench``; ``python -m bench.run`` runs it
with the image benchmark and writes the report.
"""

from __future__ import annotations

import gc
import io
import os
import random
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol
from urllib.parse import quote

import urllib3

from bench import django_setup

ACCESS_KEY = "bench-access-key"
SECRET_KEY = "bench-secret-key-0123456789"
REGION = "us-east-1"
# What MinIOStorage stores for random bytes named *.bin; the others get the same.
CONTENT_TYPE = "application/octet-stream"

OPERATIONS = ("save", "open+read", "exists", "delete", "url", "url (presigned)")
NETWORK_OPERATIONS = OPERATIONS[:4]
URL_OPERATIONS = OPERATIONS[4:]

WARMUP_ROUNDS = 5
COUNT_ROUNDS = 3
URL_SAMPLES = 60
URL_CALLS_PER_SAMPLE = 200
# url() is timed over a set of distinct names, as a page lists many pictures.
URL_NAMES = URL_CALLS_PER_SAMPLE
URL_NAME_LIST = [f"profile_pics/user-{n}_AbCdEfGh12.jpg" for n in range(URL_NAMES)]
CONTROL_LABEL = "raw minio client, A/A control"
SEED = 20240601  # the backends' order in each round; fixed so runs compare


@dataclass(frozen=True)
class Payload:
    label: str
    size: int
    rounds: int


PAYLOADS = (
    Payload("20 KB", 20 * 1024, 400),
    Payload("2 MB", 2 * 1024 * 1024, 100),
)


@dataclass(frozen=True)
class Measurement:
    backend: str
    payload: str
    operation: str
    median: float  # seconds per call
    p90: float
    samples: int
    requests: float  # per call, from the client's own hook
    wire_requests: float  # per call, every attempt urllib3 sent


@dataclass(frozen=True)
class StorageResults:
    measurements: list[Measurement]
    backends: list[str]
    baseline: str
    control: str
    payloads: tuple[Payload, ...]

    def get(self, backend: str, payload: str, operation: str) -> Measurement:
        for measurement in self.measurements:
            if (measurement.backend, measurement.payload, measurement.operation) == (
                backend,
                payload,
                operation,
            ):
                return measurement
        raise KeyError((backend, payload, operation))


class Backend(Protocol):
    label: str

    def save(self, key: str, data: bytes) -> str: ...
    def open_read(self, name: str) -> bytes: ...
    def exists(self, name: str) -> bool: ...
    def delete(self, name: str) -> None: ...
    def url(self, name: str) -> str: ...
    def presigned_url(self, name: str) -> str: ...
    def hook_requests(self, counter: RequestCounter) -> None: ...


class RequestCounter:
    def __init__(self) -> None:
        self.count = 0

    def hook_pool_manager(self, pool: urllib3.PoolManager) -> None:
        original = pool.urlopen

        def urlopen(*args: Any, **kwargs: Any):
            self.count += 1
            return original(*args, **kwargs)

        pool.urlopen = urlopen  # type: ignore[method-assign]

    def hook_botocore(self, client: Any) -> None:
        client.meta.events.register("before-send", self._before_send)

    def _before_send(self, **kwargs: Any) -> None:
        # Returning None lets botocore send the request itself.
        self.count += 1


@contextmanager
def wire_counter() -> Iterator[RequestCounter]:
    """Count every HTTP attempt urllib3 makes (minio and botocore both use it)."""
    counter = RequestCounter()
    pool_class = urllib3.connectionpool.HTTPConnectionPool
    original = pool_class._make_request

    def _make_request(*args: Any, **kwargs: Any):
        counter.count += 1
        return original(*args, **kwargs)

    pool_class._make_request = _make_request  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        pool_class._make_request = original  # type: ignore[method-assign]


def _pool_manager() -> urllib3.PoolManager:
    """The same transport settings MinIOStorage gives its client."""
    import certifi

    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=3.0, read=20.0),
        maxsize=32,
        cert_reqs="CERT_REQUIRED",
        ca_certs=certifi.where(),
        retries=urllib3.Retry(
            total=2,
            backoff_factor=0.1,
            status_forcelist=[500, 502, 503, 504],
            allowed_methods=None,
        ),
    )


class RawMinio:
    """The baseline: the minio client's own calls, nothing around them."""

    label = "raw minio client"

    def __init__(
        self,
        *,
        endpoint: str,
        bucket_name: str,
        cache_control: str,
        label: str | None = None,
    ):
        from minio import Minio

        if label:
            self.label = label
        self.bucket_name = bucket_name
        self.cache_control = cache_control
        self.client = Minio(
            endpoint=endpoint,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            secure=False,
            region=REGION,
            http_client=_pool_manager(),
        )
        self.signer = Minio(
            endpoint=endpoint,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            secure=False,
            region=REGION,
        )
        self.base_url = f"http://{endpoint}/{bucket_name}/"

    def save(self, key: str, data: bytes) -> str:
        self.client.put_object(
            bucket_name=self.bucket_name,
            object_name=key,
            data=io.BytesIO(data),
            length=len(data),
            content_type=CONTENT_TYPE,
            metadata={"Cache-Control": self.cache_control},
        )
        return key

    def open_read(self, name: str) -> bytes:
        response = self.client.get_object(
            bucket_name=self.bucket_name, object_name=name
        )
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def exists(self, name: str) -> bool:
        from minio.error import S3Error

        try:
            self.client.stat_object(bucket_name=self.bucket_name, object_name=name)
        except S3Error:
            return False
        return True

    def delete(self, name: str) -> None:
        self.client.remove_object(bucket_name=self.bucket_name, object_name=name)

    def url(self, name: str) -> str:
        return self.base_url + quote(name)

    def presigned_url(self, name: str) -> str:
        return self.signer.presigned_get_object(
            bucket_name=self.bucket_name,
            object_name=name,
            expires=timedelta(hours=1),
        )

    def hook_requests(self, counter: RequestCounter) -> None:
        counter.hook_pool_manager(self.client._http)
        counter.hook_pool_manager(self.signer._http)


class MinIOStorageBackend:
    label = "MinIOStorage"

    def __init__(self, *, endpoint: str, bucket_name: str):
        from storage.backends import MinIOStorage

        options = {
            "endpoint": endpoint,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "bucket_name": bucket_name,
            "use_ssl": False,
            "region": REGION,
        }
        self.storage = MinIOStorage(**options, url_mode="public")
        self.presigning = MinIOStorage(**options, url_mode="presigned")

    def save(self, key: str, data: bytes) -> str:
        from django.core.files.base import ContentFile

        return self.storage.save(key, ContentFile(data))

    def open_read(self, name: str) -> bytes:
        with self.storage.open(name) as file:
            return file.read()

    def exists(self, name: str) -> bool:
        return self.storage.exists(name)

    def delete(self, name: str) -> None:
        self.storage.delete(name)

    def url(self, name: str) -> str:
        return self.storage.url(name)

    def presigned_url(self, name: str) -> str:
        return self.presigning.url(name)

    def hook_requests(self, counter: RequestCounter) -> None:
        from storage.backends import _signer

        counter.hook_pool_manager(self.storage.client._http)
        presigning = self.presigning
        signer = _signer(
            presigning.public_url,
            presigning.access_key,
            presigning.secret_key,
            presigning.region,
        )
        counter.hook_pool_manager(signer._http)


class S3StorageBackend:
    """django-storages' S3 backend, configured as its documentation suggests."""

    label = "django-storages S3Storage"

    def __init__(self, *, endpoint: str, bucket_name: str, cache_control: str):
        from storages.backends.s3 import S3Storage

        options = {
            "endpoint_url": f"http://{endpoint}",
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "bucket_name": bucket_name,
            "region_name": REGION,
            "addressing_style": "path",
            "signature_version": "s3v4",
            "default_acl": None,
            # Never overwrite, like MinIOStorage; django-storages checks with a
            # HEAD request before each save to find a free name.
            "file_overwrite": False,
            "object_parameters": {"CacheControl": cache_control},
        }
        self.storage = S3Storage(**options, querystring_auth=False)
        self.presigning = S3Storage(**options, querystring_auth=True)

    def save(self, key: str, data: bytes) -> str:
        from django.core.files.base import ContentFile

        return self.storage.save(key, ContentFile(data))

    def open_read(self, name: str) -> bytes:
        with self.storage.open(name) as file:
            return file.read()

    def exists(self, name: str) -> bool:
        return self.storage.exists(name)

    def delete(self, name: str) -> None:
        self.storage.delete(name)

    def url(self, name: str) -> str:
        return self.storage.url(name)

    def presigned_url(self, name: str) -> str:
        return self.presigning.url(name)

    def hook_requests(self, counter: RequestCounter) -> None:
        for storage in (self.storage, self.presigning):
            counter.hook_botocore(storage.connection.meta.client)
            counter.hook_botocore(storage.unsigned_connection.meta.client)


def _shuffled(items: list, rng: random.Random) -> list:
    # A fresh order for every operation of every round: a fixed or rotating
    # order would always run one backend right after the same other one (its
    # CPU caches and the server's state left behind), a bias of several percent.
    return rng.sample(items, len(items))


def _key(payload: Payload, backend: Backend, number: int) -> str:
    size = payload.label.replace(" ", "").lower()
    tag = "".join(char for char in backend.label.lower() if char.isalnum())[:12]
    return f"bench/{size}/{tag}-{number:04d}-{uuid.uuid4().hex[:8]}.bin"


@contextmanager
def _gc_paused() -> Iterator[None]:
    # A collection landing inside one timed call would be charged to whichever
    # backend happened to run; collect between calls instead.
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def _round(
    backends: list[Backend],
    payload: Payload,
    data: bytes,
    number: int,
    samples: dict[tuple[str, str], list[float]] | None,
    rng: random.Random,
) -> None:
    """Save, read, check and delete one object per backend, backends in turn."""
    names: dict[str, str] = {}

    def record(backend: Backend, operation: str, elapsed: float) -> None:
        if samples is not None:
            samples[(backend.label, operation)].append(elapsed)

    keys = {backend.label: _key(payload, backend, number) for backend in backends}
    for backend in _shuffled(backends, rng):
        elapsed, names[backend.label] = _timed(
            lambda b=backend: b.save(keys[b.label], data)
        )
        record(backend, "save", elapsed)
    for backend in _shuffled(backends, rng):
        elapsed, body = _timed(lambda b=backend: b.open_read(names[b.label]))
        record(backend, "open+read", elapsed)
        if body != data:
            raise RuntimeError(f"{backend.label} read back different bytes")
    for backend in _shuffled(backends, rng):
        elapsed, found = _timed(lambda b=backend: b.exists(names[b.label]))
        record(backend, "exists", elapsed)
        if not found:
            raise RuntimeError(f"{backend.label} lost {names[backend.label]}")
    for backend in _shuffled(backends, rng):
        elapsed, _ = _timed(lambda b=backend: b.delete(names[b.label]))
        record(backend, "delete", elapsed)
    gc.collect()


def _time_urls(
    backends: list[Backend], rng: random.Random
) -> dict[tuple[str, str], list[float]]:
    samples: dict[tuple[str, str], list[float]] = {
        (backend.label, operation): []
        for backend in backends
        for operation in URL_OPERATIONS
    }
    for number in range(URL_SAMPLES + 5):
        for backend in _shuffled(backends, rng):
            for operation, method in (
                ("url", backend.url),
                ("url (presigned)", backend.presigned_url),
            ):
                started = time.perf_counter()
                for url_name in URL_NAME_LIST:
                    method(url_name)
                elapsed = (time.perf_counter() - started) / URL_CALLS_PER_SAMPLE
                if number >= 5:  # the first samples are warm-up
                    samples[(backend.label, operation)].append(elapsed)
        gc.collect()
    return samples


def _count_requests(
    backends: list[Backend], payload: Payload, data: bytes, hook: RequestCounter
) -> dict[tuple[str, str], tuple[float, float]]:
    """Requests per call of each operation: (client hook, wire)."""
    totals: dict[tuple[str, str], list[int]] = {}
    with wire_counter() as wire:

        def counted(
            backend: Backend, operation: str, call: Callable[..., Any], *args: Any
        ) -> Any:
            hook.count = wire.count = 0
            result = call(*args)
            counts = totals.setdefault((backend.label, operation), [0, 0])
            counts[0] += hook.count
            counts[1] += wire.count
            return result

        for number in range(COUNT_ROUNDS):
            for backend in backends:
                key = _key(payload, backend, number)
                name = counted(backend, "save", backend.save, key, data)
                counted(backend, "open+read", backend.open_read, name)
                counted(backend, "exists", backend.exists, name)
                counted(backend, "delete", backend.delete, name)
                counted(backend, "url", backend.url, name)
                counted(backend, "url (presigned)", backend.presigned_url, name)
                if backend.exists(name):
                    raise RuntimeError(f"{backend.label} did not delete {name}")
    return {
        key: (hooked / COUNT_ROUNDS, sent / COUNT_ROUNDS)
        for key, (hooked, sent) in totals.items()
    }


def _summary(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), statistics.quantiles(values, n=10)[-1]


def run(*, log: Callable[[str], None] = print) -> StorageResults:
    django_setup()
    from minio import Minio

    from scripts import s3_server
    from storage.backends import IMMUTABLE_CACHE_CONTROL

    server = s3_server.start(access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    try:
        log(f"SeaweedFS S3 API on {server.endpoint}")
        admin = Minio(
            endpoint=server.endpoint,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            secure=False,
            region=REGION,
        )
        for bucket_name in ("bench-raw", "bench-control", "bench-minio", "bench-s3"):
            admin.make_bucket(bucket_name=bucket_name)
        backends: list[Backend] = [
            RawMinio(
                endpoint=server.endpoint,
                bucket_name="bench-raw",
                cache_control=IMMUTABLE_CACHE_CONTROL,
            ),
            # The baseline again, on its own bucket: how far two identical
            # clients differ is the noise floor of every ratio.
            RawMinio(
                endpoint=server.endpoint,
                bucket_name="bench-control",
                cache_control=IMMUTABLE_CACHE_CONTROL,
                label=CONTROL_LABEL,
            ),
            MinIOStorageBackend(endpoint=server.endpoint, bucket_name="bench-minio"),
            S3StorageBackend(
                endpoint=server.endpoint,
                bucket_name="bench-s3",
                cache_control=IMMUTABLE_CACHE_CONTROL,
            ),
        ]
        rng = random.Random(SEED)
        url_samples = _time_urls(backends, rng)
        samples: dict[tuple[str, str, str], list[float]] = {}
        payload_data = {payload.label: os.urandom(payload.size) for payload in PAYLOADS}
        for payload in PAYLOADS:
            data = payload_data[payload.label]
            round_samples: dict[tuple[str, str], list[float]] = {
                (backend.label, operation): []
                for backend in backends
                for operation in NETWORK_OPERATIONS
            }
            log(f"storage: {payload.label} x {payload.rounds} rounds")
            with _gc_paused():
                for number in range(WARMUP_ROUNDS):
                    _round(backends, payload, data, number, None, rng)
                for number in range(payload.rounds):
                    _round(backends, payload, data, number, round_samples, rng)
            for (label, operation), values in round_samples.items():
                samples[(label, payload.label, operation)] = values
            for (label, operation), values in url_samples.items():
                samples[(label, payload.label, operation)] = values
        # Hooks go in only now, so that no timed call runs through them.
        hook = RequestCounter()
        for backend in backends:
            backend.hook_requests(hook)
        measurements: list[Measurement] = []
        for payload in PAYLOADS:
            requests = _count_requests(
                backends, payload, payload_data[payload.label], hook
            )
            for backend in backends:
                for operation in OPERATIONS:
                    values = samples[(backend.label, payload.label, operation)]
                    median, p90 = _summary(values)
                    hooked, sent = requests[(backend.label, operation)]
                    measurements.append(
                        Measurement(
                            backend=backend.label,
                            payload=payload.label,
                            operation=operation,
                            median=median,
                            p90=p90,
                            samples=len(values),
                            requests=hooked,
                            wire_requests=sent,
                        )
                    )
    finally:
        server.stop()
    return StorageResults(
        measurements=measurements,
        backends=[backend.label for backend in backends],
        baseline=RawMinio.label,
        control=CONTROL_LABEL,
        payloads=PAYLOADS,
    )


def format_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    return f"{seconds * 1e3:.2f} ms"


def main() -> None:
    results = run()
    for m in results.measurements:
        base = results.get(results.baseline, m.payload, m.operation)
        print(
            f"{m.payload:>6} {m.operation:<16} {m.backend:<26} "
            f"median {format_seconds(m.median):>10}  p90 {format_seconds(m.p90):>10}  "
            f"x{m.median / base.median:5.2f}  requests {m.requests:g} "
            f"(wire {m.wire_requests:g})"
        )


if __name__ == "__main__":
    main()
