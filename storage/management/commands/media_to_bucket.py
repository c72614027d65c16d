import time
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import storages
from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from django.db import DatabaseError

from storage.backends import MinIOStorage
from storage.config import PUBLIC_MEDIA_PREFIXES, validate_private_media_root
from storage.exceptions import StorageUnavailable
from storage.migrate_media import (
    HIDDEN,
    FileResult,
    MigrationReport,
    Outcome,
    media_migrate,
)

MAX_WORKERS = 32  # the storage client's connection pool holds 32 connections
UNUSED_NAMED = 5  # unreferenced files named in the report; the rest counted


class Command(BaseCommand):
    help = (
        "Copy every file under the media folder to the MinIO/S3 bucket of the "
        "MINIO_* settings, under the same keys (profile_pics/..., token_logo/..., "
        "default_avatar.jpg), and the private files of PRIVATE_MEDIA_ROOT under "
        "theirs (private/...). Under profile_pics/, token_logo/ and private/ "
        "only the files a row still references are copied: the app deleted the "
        "others (a replaced avatar, a removed logo, a rejected document). "
        "Objects already identical (size, MD5, Content-Type and Cache-Control) "
        "are skipped, objects of the same content with other headers get the "
        "app's, and every copy is verified, so running it again after an "
        "interruption continues where it stopped. Links are followed, as the "
        "app follows them on local disk. Exits 1 if any file failed, a file a "
        "row references was left out (a hidden or odd name), or MINIO_ENDPOINT "
        "is not an S3 API."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--source",
            type=Path,
            help="Folder to copy (default: MEDIA_ROOT).",
        )
        parser.add_argument(
            "--private-source",
            type=Path,
            help="Folder of private files to copy, its private/ only "
            "(default: PRIVATE_MEDIA_ROOT, when it exists).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Report what would be copied; write nothing.",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=4,
            help=f"Files copied in parallel, 1 to {MAX_WORKERS} (default: 4).",
        )

    def handle(self, *args, **options) -> None:
        source = Path(options["source"] or settings.MEDIA_ROOT)
        if not source.is_dir():
            raise CommandError(f"{source} is not a folder: pass --source.")
        private_source = _private_source(options["private_source"], source)
        workers = options["workers"]
        if not 1 <= workers <= MAX_WORKERS:
            raise CommandError(f"--workers must be between 1 and {MAX_WORKERS}.")
        storage = storages["default"]
        if not isinstance(storage, MinIOStorage):
            try:
                storage = MinIOStorage()
            except ImproperlyConfigured as exc:
                raise CommandError(str(exc)) from exc

        verbosity = options["verbosity"]
        progress = Progress(self.stderr, dry_run=options["dry_run"])
        per_file = verbosity >= 2

        def on_result(result: FileResult, report: MigrationReport) -> None:
            if per_file:
                self.stdout.write(_file_line(result, dry_run=report.dry_run))
            elif verbosity == 1:
                progress.update(result, report)

        try:
            report = media_migrate(
                storage=storage,
                source=source,
                private_source=private_source,
                dry_run=options["dry_run"],
                workers=workers,
                on_result=on_result,
            )
        except StorageUnavailable as exc:
            raise CommandError(str(exc)) from exc
        except DatabaseError as exc:
            raise CommandError(
                f"The database could not be read ({exc}). It says which avatars, "
                "logos and identity documents to copy: run the command with the "
                "app's DATABASE_URL."
            ) from exc
        finally:
            progress.close()

        for line in report_lines(report):
            self.stdout.write(line)
        failed = report.with_outcome(Outcome.FAILED)
        if report.stopped:
            raise CommandError(
                f"Stopped before the end ({report.stopped}). Run the command "
                "again: it skips what is already copied and goes on."
            )
        if failed:
            # Files a row references that were left out are failures too.
            found = {file.key for file in report.files} | {r.key for r in failed}
            raise CommandError(
                f"{len(failed)} of {len(found)} files failed (reasons "
                "above). Fix them and run the command again: it copies only "
                "what is missing or different."
            )
        if report.dry_run:
            self.stdout.write(self.style.SUCCESS("Dry run: nothing was written."))
        else:
            copied = (
                f"{report.source} that the app uses (under "
                f"{' and '.join(PUBLIC_MEDIA_PREFIXES)}, those a row references)"
            )
            if report.private_source:
                copied += (
                    f", and every private file of {report.private_source} that "
                    "a row references"
                )
            self.stdout.write(
                self.style.SUCCESS(
                    f"The bucket '{report.bucket}' holds every file of {copied}."
                )
            )


def _private_source(given: Path | None, source: Path) -> Path | None:
    """The folder of private files to copy; None when the default one does not
    exist (no private file was ever stored on this disk)."""
    private = Path(given or settings.PRIVATE_MEDIA_ROOT)
    if not private.is_dir():
        if given:
            raise CommandError(f"{private} is not a folder: check --private-source.")
        return None
    try:
        validate_private_media_root(private, media_root=source)
    except ImproperlyConfigured as exc:
        raise CommandError(str(exc)) from exc
    return private


class Progress:
    """One self-rewriting line on a terminal; a line per 10% otherwise."""

    def __init__(self, stream: OutputWrapper, *, dry_run: bool) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.verb = "checked" if dry_run else "processed"
        self.done = self.bytes = self.failed = 0
        self.next_percent = 10
        self.drawn = False
        self.last_draw = 0.0

    def update(self, result: FileResult, report: MigrationReport) -> None:
        total = len(report.files)
        self.done += 1
        self.bytes += result.size
        self.failed += result.outcome == Outcome.FAILED
        percent = self.done * 100 // max(total, 1)
        text = (
            f"{percent:3d}%  {self.done}/{total} files {self.verb}, "
            f"{_size(self.bytes)} of {_size(report.total_bytes)}"
            + (f", {self.failed} failed" if self.failed else "")
        )
        if self.tty:
            now = time.monotonic()
            if now - self.last_draw < 0.1 and self.done < total:
                return
            self.last_draw = now
            filled = percent * 30 // 100
            bar = "#" * filled + "-" * (30 - filled)
            self._write(f"\r[{bar}] {text}\x1b[K", ending="")
            self.drawn = True
        elif percent >= self.next_percent or self.done == total:
            self._write(text)
            self.next_percent = (percent // 10 + 1) * 10

    def close(self) -> None:
        if self.drawn:
            self._write("")

    def _write(self, text: str, ending: str = "\n") -> None:
        # Progress is not an error: no red from the stderr style.
        self.stream.write(text, style_func=str, ending=ending)
        self.stream.flush()


def report_lines(report: MigrationReport) -> list[str]:
    copied = report.with_outcome(Outcome.COPIED)
    failed = report.with_outcome(Outcome.FAILED)
    hidden = sum(1 for _, reason in report.ignored if reason == HIDDEN)
    bucket = f"{report.bucket} at {report.endpoint}"
    if report.bucket_created:
        bucket += " (created)"
    elif report.bucket_missing and report.dry_run:
        bucket += " (does not exist yet; a real run creates it)"
    elif report.bucket_missing:
        bucket += " (does not exist; nothing to copy into it)"
    copied_text = f"{len(copied)} files, {_size(report.bytes_copied)}"
    if copied and not report.dry_run:
        copied_text += ", each verified"
    rows = [
        ("Source", str(report.source)),
        ("Private", str(report.private_source or "none (no such folder)")),
        ("Bucket", bucket),
        ("Found", f"{len(report.files)} files, {_size(report.total_bytes)}"),
        ("Would copy" if report.dry_run else "Copied", copied_text),
        ("Identical", f"{len(report.with_outcome(Outcome.IDENTICAL))} (skipped)"),
        (
            "Headers",
            f"{len(report.with_outcome(Outcome.HEADERS_FIXED))} "
            + ("to fix" if report.dry_run else "fixed")
            + " (same content, other Content-Type or Cache-Control)",
        ),
        ("Failed", str(len(failed))),
    ]
    lines = [f"{label + ':':<12}{value}" for label, value in rows]
    lines += [f"  {result.key}: {result.reason}" for result in failed]
    if report.not_reached:
        lines.append(f"{'Remaining:':<12}{report.not_reached} (the run stopped first)")
    if report.unreferenced:
        lines.append(
            f"{'Unused:':<12}not referenced by any row, not copied: "
            f"{len(report.unreferenced)}"
        )
        lines += [f"  {key}" for key in report.unreferenced[:UNUSED_NAMED]]
        if len(report.unreferenced) > UNUSED_NAMED:
            lines.append(f"  and {len(report.unreferenced) - UNUSED_NAMED} more")
    if report.ignored:
        others = len(report.ignored) - hidden
        lines.append(
            f"{'Not copied:':<12}{hidden} hidden"
            + (f", {others} more:" if others else "")
        )
        lines += [
            f"  {path}: {reason}" for path, reason in report.ignored if reason != HIDDEN
        ]
    return lines


def _file_line(result: FileResult, *, dry_run: bool) -> str:
    if result.outcome == Outcome.FAILED:
        return f"failed     {result.key}: {result.reason}"
    if result.outcome == Outcome.IDENTICAL:
        return f"identical  {result.key}"
    if result.outcome == Outcome.HEADERS_FIXED:
        verb = "would fix" if dry_run else "fixed"
        return f"{verb:<10} {result.key} (headers)"
    return f"{'would copy' if dry_run else 'copied':<10} {result.key}"


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    value = count / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
