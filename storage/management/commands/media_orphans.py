from django.core.management.base import BaseCommand, CommandError

from storage.exceptions import StorageUnavailable
from storage.orphans import (
    DEFAULT_GRACE_MINUTES,
    MAX_GRACE_MINUTES,
    MIN_GRACE_MINUTES,
    MediaFoldersUnsafe,
    media_orphans_collect,
)


class Command(BaseCommand):
    help = (
        "List the objects under profile_pics/ and token_logo/, and the private "
        "files under private/identity/, that no row references; with --delete "
        "remove them (and finish deletions queued "
        "while the store was down). Objects younger than --grace-minutes may be "
        "uploads in flight and are left alone, so it is safe to run at any time; "
        f"a grace period under {MIN_GRACE_MINUTES} minutes is refused. "
        "On local disk, links to folders are not followed (they are listed)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--delete", action="store_true", help="remove the unreferenced objects"
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="with --delete: only report what would be removed",
        )
        parser.add_argument(
            "--grace-minutes",
            type=int,
            default=DEFAULT_GRACE_MINUTES,
            help=(
                f"leave objects younger than this (default {DEFAULT_GRACE_MINUTES}, "
                f"at least {MIN_GRACE_MINUTES})"
            ),
        )

    def handle(self, *args, **options) -> None:
        if options["grace_minutes"] < MIN_GRACE_MINUTES:
            raise CommandError(
                f"--grace-minutes must be at least {MIN_GRACE_MINUTES}: an upload "
                "writes its object before its row commits, up to gunicorn's 30 s "
                "timeout later, and a younger object may be one in flight; "
                "deleting it would leave the new row pointing at nothing."
            )
        if options["grace_minutes"] > MAX_GRACE_MINUTES:
            raise CommandError(
                f"--grace-minutes must be between {MIN_GRACE_MINUTES} and "
                f"{MAX_GRACE_MINUTES} (100 years)."
            )
        delete = options["delete"] and not options["dry_run"]
        try:
            report = media_orphans_collect(
                delete=delete, grace_minutes=options["grace_minutes"]
            )
        except (StorageUnavailable, MediaFoldersUnsafe) as exc:
            raise CommandError(str(exc)) from exc
        for link in report.links:
            self.stdout.write(
                f"{'link skipped':<15} {link}/ (a link to a folder, not followed: "
                "nothing through it is listed or deleted)"
            )
        removed = set(report.deleted)
        for name in report.orphans:
            state = "deleted" if name in removed else "unreferenced"
            if name in report.failed:
                state = "failed, queued"
            self.stdout.write(f"{state:<15} {name}")
        self.stdout.write(
            f"scanned {report.scanned}, referenced {report.referenced}, "
            f"younger than {options['grace_minutes']} min {report.recent}, "
            f"unreferenced {len(report.orphans)}, deleted {len(report.deleted)}, "
            f"failed {len(report.failed)}"
        )
        if delete:
            self.stdout.write(
                f"queued deletions finished {report.pending_finished}, "
                f"still queued {report.pending_left}"
            )
        elif report.orphans:
            self.stdout.write("Nothing was deleted (run with --delete to remove).")
        if report.failed:
            raise CommandError(
                f"{len(report.failed)} objects could not be deleted; "
                "they are queued and retried on the next run."
            )
