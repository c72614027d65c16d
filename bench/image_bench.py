"""The avatar pipeline against a naive Pillow resize, on a 4000x3000 JPEG photo.

Naive: ``Image.open(path).convert("RGB").resize((300, 300))`` saved as JPEG
quality 85. Project: ``storage.images.image_process(File(...), spec=AVATAR)``,
which also validates, orients, crops, converts to sRGB and strips metadata.

Time: both paths run in this process, taking turns, after one warm-up each.
Memory: each path runs once in a fresh interpreter that has already imported
Pillow, Django and ``storage.images``; what is reported is how far the path
raises the process's resident memory above that baseline. Two measures:

- peak RSS: the kernel's high-water mark (``VmHWM``), reset to the current RSS
  just before the path runs (``/proc/self/clear_refs``), minus that RSS; the
  ``ru_maxrss`` difference is reported beside it as a cross-check. This is the
  measure the target is about: it includes Pillow's pixel buffers and libjpeg.
- tracemalloc peak: Python-level allocations only. Pillow allocates pixel
  memory with C ``malloc``, which tracemalloc does not see (a 4000x3000 RGB
  ``Image.new`` shows up as about 1 KB), so this counts buffers such as the
  encoded output and file reads, not decoded images.

Run alone with ``python -m bench.image_bench``.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import django_setup

WIDTH, HEIGHT = 4000, 3000
SOURCE_QUALITY = 90
RUNS = 10
MEMORY_RUNS = 3
PATHS = ("naive", "project")


@dataclass(frozen=True)
class PathResult:
    name: str
    median: float  # seconds
    minimum: float
    p90: float
    peak_rss: int  # bytes above the post-import baseline, worst of MEMORY_RUNS
    peak_rss_runs: list[int]
    maxrss_delta: int  # bytes, the ru_maxrss cross-check, worst run
    tracemalloc_peak: int  # bytes
    output_bytes: int


@dataclass(frozen=True)
class ImageResults:
    source_bytes: int
    width: int
    height: int
    baseline_rss: int  # bytes, the subprocess after imports
    hwm_reset: bool
    naive: PathResult
    project: PathResult


def make_photo(path: Path) -> None:
    """A photo-like JPEG: smooth gradients, shapes with edges, sensor noise."""
    from PIL import Image, ImageChops, ImageDraw, ImageFilter

    size = (WIDTH, HEIGHT)
    horizontal = Image.linear_gradient("L").rotate(90).resize(size)
    vertical = Image.linear_gradient("L").resize(size)
    radial = Image.radial_gradient("L").resize(size)
    shapes = Image.new("L", size, 0)
    draw = ImageDraw.Draw(shapes)
    for index in range(24):
        left = (index * 613) % (WIDTH - 400)
        top = (index * 347) % (HEIGHT - 300)
        draw.ellipse(
            (left, top, left + 180 + index * 9, top + 120 + index * 7),
            fill=40 + (index * 37) % 180,
        )
    shapes = shapes.filter(ImageFilter.GaussianBlur(3))
    channels = []
    for base, sigma in ((horizontal, 14), (vertical, 12), (radial, 16)):
        noise = Image.effect_noise(size, sigma)
        mixed = ImageChops.add(base, shapes, scale=1.4)
        channels.append(ImageChops.add(mixed, noise, offset=-128))
    photo = Image.merge("RGB", channels)
    exif = Image.Exif()
    exif[0x0112] = 1  # Orientation: as a camera writes it
    exif[0x010F] = "BenchCam"  # Make
    photo.save(path, format="JPEG", quality=SOURCE_QUALITY, exif=exif)


def naive_resize(path: Path) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    with Image.open(path) as img:
        img.convert("RGB").resize((300, 300)).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def project_resize(path: Path) -> bytes:
    from django.core.files import File

    from storage.images import AVATAR, image_process

    with open(path, "rb") as handle:
        return image_process(File(handle), spec=AVATAR).read()


RESIZERS: dict[str, Callable[[Path], bytes]] = {
    "naive": naive_resize,
    "project": project_resize,
}


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} missing from /proc/self/status")


def _reset_high_water_mark() -> bool:
    # Linux: "5" resets VmHWM to the current RSS (proc(5), clear_refs).
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def measure_memory(path_name: str, source: Path, *, trace: bool) -> dict:
    """Run one path once in a clean process and report its memory use.

    A process started by exec inherits its parent's ``ru_maxrss`` (the kernel
    carries the old high-water mark over), so a subprocess of the benchmark
    would start at the benchmark's own peak. The path therefore runs in a
    child forked from this fresh interpreter, whose counters start clean.
    """
    django_setup()
    from PIL import Image

    import storage.images  # noqa: F401  (part of the baseline, like Pillow)

    Image.init()
    gc.collect()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        code = 1
        try:
            result = _measure_here(path_name, source, trace=trace)
            os.write(write_end, json.dumps(result).encode())
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RuntimeError(f"the {path_name} path failed in the measuring child")
    return json.loads(payload)


def _measure_here(path_name: str, source: Path, *, trace: bool) -> dict:
    gc.collect()
    baseline = _status_bytes("VmRSS")
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    reset = _reset_high_water_mark()
    if trace:
        tracemalloc.start()
    output = RESIZERS[path_name](source)
    result = {
        "baseline_rss": baseline,
        "hwm_reset": reset,
        "peak_rss": _status_bytes("VmHWM") - baseline,
        "maxrss_delta": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        - maxrss_before,
        "output_bytes": len(output),
    }
    if trace:
        result["tracemalloc_peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result


def _memory_in_subprocess(path_name: str, source: Path, *, trace: bool) -> dict:
    command = [sys.executable, "-m", "bench.image_bench", "--memory", path_name]
    command += [str(source)] + (["--trace"] if trace else [])
    repo_root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    completed = subprocess.run(
        command, cwd=repo_root, env=env, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"memory measurement of {path_name} failed:\n{completed.stderr[-3000:]}"
        )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _time_paths(source: Path) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in PATHS}
    for name in PATHS:
        RESIZERS[name](source)  # warm-up: imports, plugin registration, caches
    for number in range(RUNS):
        order = PATHS if number % 2 == 0 else PATHS[::-1]
        for name in order:
            gc.collect()
            started = time.perf_counter()
            RESIZERS[name](source)
            times[name].append(time.perf_counter() - started)
    return times


def run(*, log: Callable[[str], None] = print) -> ImageResults:
    django_setup()
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="image-bench-") as folder:
        source = Path(folder) / "photo.jpg"
        make_photo(source)
        with Image.open(source) as img:
            width, height = img.size
        log(f"image: {width}x{height} JPEG, {source.stat().st_size:,} bytes")
        times = _time_paths(source)
        memory: dict[str, list[dict]] = {name: [] for name in PATHS}
        traced: dict[str, dict] = {}
        for _ in range(MEMORY_RUNS):
            for name in PATHS:
                memory[name].append(_memory_in_subprocess(name, source, trace=False))
        for name in PATHS:
            traced[name] = _memory_in_subprocess(name, source, trace=True)
        source_bytes = source.stat().st_size

    def result(name: str) -> PathResult:
        runs = memory[name]
        return PathResult(
            name=name,
            median=statistics.median(times[name]),
            minimum=min(times[name]),
            p90=statistics.quantiles(times[name], n=10)[-1],
            peak_rss=max(run["peak_rss"] for run in runs),
            peak_rss_runs=[run["peak_rss"] for run in runs],
            maxrss_delta=max(run["maxrss_delta"] for run in runs),
            tracemalloc_peak=traced[name]["tracemalloc_peak"],
            output_bytes=runs[0]["output_bytes"],
        )

    all_runs = [run for runs in memory.values() for run in runs]
    return ImageResults(
        source_bytes=source_bytes,
        width=width,
        height=height,
        baseline_rss=max(run["baseline_rss"] for run in all_runs),
        hwm_reset=all(run["hwm_reset"] for run in all_runs),
        naive=result("naive"),
        project=result("project"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memory", choices=PATHS, help="measure one path (internal)")
    parser.add_argument("source", nargs="?", type=Path)
    parser.add_argument("--trace", action="store_true", help="with tracemalloc")
    args = parser.parse_args()
    if args.memory:
        print(json.dumps(measure_memory(args.memory, args.source, trace=args.trace)))
        return
    results = run()
    for path in (results.naive, results.project):
        print(
            f"{path.name:<8} median {path.median * 1e3:7.1f} ms  "
            f"peak RSS +{path.peak_rss / 2**20:6.1f} MiB "
            f"(ru_maxrss +{path.maxrss_delta / 2**20:.1f} MiB)  "
            f"tracemalloc peak {path.tracemalloc_peak / 2**20:6.2f} MiB"
        )
    time_ratio = results.project.median / results.naive.median
    print(f"time ratio project/naive: {time_ratio:.2f}")


if __name__ == "__main__":
    main()
