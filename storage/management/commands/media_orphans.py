from django.core.management.base import BaseCommand, CommandError

from storage.exceptions import StorageUnavailable
from storage.orphans import DEFAULT_GRACE_MINUTES, media_orphans_collect


class Command(BaseCommand):
    help = (
        "List the objects under profile_pics/ and token_logo/, and the private "
        "files under private/identity/, that no row references; with --delete "
        "remove them (and finish deletions queued "
        "while the store was down). Objects younger than --grace-minutes may be "
        "uploads in flight and are left alone, so it is safe to run at any time."
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
            help=f"leave objects younger than this (default {DEFAULT_GRACE_MINUTES})",
        )

    def handle(self, *args, **options) -> None:
        if options["grace_minutes"] < 0:
            raise CommandError("--grace-minutes must not be negative.")
        delete = options["delete"] and not options["dry_run"]
        try:
            report = media_orphans_collect(
                delete=delete, grace_minutes=options["grace_minutes"]
            )
        except StorageUnavailable as exc:
            raise CommandError(str(exc)) from exc
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
