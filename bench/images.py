"""The avatar pipeline against a naive Pillow resize: time and memory.

    python -m bench.images

Targets: the avatar path in at most 0.3x the naive path's time, with a peak
resident memory under 12 MB (10^6 bytes) above the process's baseline.

Method. The source is a generated 4000x3000 JPEG (quality 90, EXIF) of
gradients, blurred shapes and per-channel noise, which compresses like a photo.
Naive: ``Image.open(path).convert("RGB").resize((300, 300))`` saved as JPEG
quality 85. Project: ``storage.images.image_process(File(...), spec=AVATAR)``,
which also validates, orients, crops, converts to sRGB and strips metadata.
Time: both paths in this process, taking turns, 10 runs each after a warm-up;
the median. Memory: each path once in a fresh interpreter that has imported
Pillow, Django and ``storage.images``: the kernel's high-water mark ``VmHWM``
is reset to the resident size just before the path (``/proc/self/clear_refs``)
and read after it, so Pillow's pixel buffers and libjpeg's memory count (which
``tracemalloc`` would not see); the worst of 3 runs.
"""

from __future__ import annotations

import gc
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import Run, django_setup, table, targets

HEADING = "## Image pipeline"
SIZE, RUNS, MEMORY_RUNS = (4000, 3000), 10, 3
MAX_TIME_RATIO, MAX_PEAK = 0.3, 12 * 1000 * 1000


def photo_make(path: Path) -> None:
    """A photo-like JPEG: smooth gradients, shapes with edges, sensor noise."""
    from PIL import Image, ImageChops, ImageDraw, ImageFilter

    shapes = Image.new("L", SIZE, 0)
    draw = ImageDraw.Draw(shapes)
    for n in range(24):
        left, top = (n * 613) % (SIZE[0] - 400), (n * 347) % (SIZE[1] - 300)
        box = (left, top, left + 180 + n * 9, top + 120 + n * 7)
        draw.ellipse(box, fill=40 + (n * 37) % 180)
    shapes = shapes.filter(ImageFilter.GaussianBlur(3))
    gradients = (
        Image.linear_gradient("L").rotate(90).resize(SIZE),
        Image.linear_gradient("L").resize(SIZE),
        Image.radial_gradient("L").resize(SIZE),
    )
    channels = [
        ImageChops.add(
            ImageChops.add(gradient, shapes, scale=1.4),
            Image.effect_noise(SIZE, sigma),
            offset=-128,
        )
        for gradient, sigma in zip(gradients, (14, 12, 16), strict=True)
    ]
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 1, "BenchCam"  # orientation, make
    Image.merge("RGB", channels).save(path, format="JPEG", quality=90, exif=exif)


def naive(path: Path) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    with Image.open(path) as image:
        image.convert("RGB").resize((300, 300)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def project(path: Path) -> bytes:
    from django.core.files import File

    from storage.images import AVATAR, image_process

    with open(path, "rb") as handle:
        return image_process(File(handle), spec=AVATAR).read()


PATHS = {"naive": naive, "project": project}
LABELS = {
    "naive": "naive Pillow (open, convert, resize, save q85)",
    "project": "**project** `image_process(..., spec=AVATAR)`",
}


def status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} missing from /proc/self/status")


def memory_peak(name: str, source: str) -> None:
    """In a fresh interpreter: print the path's peak above the baseline."""
    django_setup()
    from PIL import Image

    import storage.images  # noqa: F401  (in the baseline, like Pillow)

    Image.init()
    gc.collect()
    baseline = status_bytes("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS (proc(5))
    PATHS[name](Path(source))
    print(json.dumps({"peak": status_bytes("VmHWM") - baseline}))


def memory_measured(name: str, source: Path) -> dict:
    code = f"from bench.images import memory_peak; memory_peak({name!r}, '{source}')"
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    run = Run("bench.images", HEADING)
    django_setup()
    times: dict[str, list[float]] = {name: [] for name in PATHS}
    with tempfile.TemporaryDirectory(prefix="bench-images-") as folder:
        source = Path(folder) / "photo.jpg"
        photo_make(source)
        run.log(f"{SIZE[0]}x{SIZE[1]} JPEG, {source.stat().st_size:,} bytes")
        outputs = {name: len(resize(source)) for name, resize in PATHS.items()}
        for number in range(RUNS):
            for name in list(PATHS)[:: 1 if number % 2 else -1]:
                gc.collect()
                started = time.perf_counter()
                PATHS[name](source)
                times[name].append(time.perf_counter() - started)
        memory = {
            name: [memory_measured(name, source) for _ in range(MEMORY_RUNS)]
            for name in PATHS
        }
    median = {name: statistics.median(values) for name, values in times.items()}
    peak = {name: max(m["peak"] for m in runs) for name, runs in memory.items()}
    ratio = median["project"] / median["naive"]
    checks = [
        (
            f"Avatar path time ≤ {MAX_TIME_RATIO}x naive",
            f"{ratio:.2f}x ({median['project'] * 1e3:.1f} ms against "
            f"{median['naive'] * 1e3:.1f} ms)",
            ratio <= MAX_TIME_RATIO,
        ),
        (
            "Avatar path peak resident memory < 12 MB",
            f"+{peak['project'] / 1e6:.1f} MB (naive +{peak['naive'] / 1e6:.1f} MB)",
            peak["project"] < MAX_PEAK,
        ),
    ]
    rows = [
        {
            "Path": LABELS[name],
            "Median": f"{median[name] * 1e3:.1f} ms",
            "Min": f"{min(times[name]) * 1e3:.1f} ms",
            "x naive": f"{median[name] / median['naive']:.2f}x",
            "Peak RSS increase": f"+{peak[name] / 1e6:.1f} MB",
            "Output": f"{outputs[name]:,} B",
        }
        for name in PATHS
    ]
    run.write([*targets(checks), "", *table(rows)], packages=("Django", "pillow"))


if __name__ == "__main__":
    main()
