from django.conf import settings
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError

from accounts.services import avatar_remove
from storage.backends import MinIOStorage
from storage.exceptions import StorageUnavailable
from storage.orphans import (
    DEFAULT_GRACE_MINUTES,
    MAX_GRACE_MINUTES,
    MIN_GRACE_MINUTES,
    MediaFoldersUnsafe,
    MissingRepairs,
    media_missing_collect,
    media_orphans_collect,
)
from tokens.services import token_logo_remove

# Here rather than in storage, which the apps build on and imports none of them.
MISSING_REPAIRS: MissingRepairs = {
    ("accounts.Profile", "avatar"): (
        lambda row: avatar_remove(profile=row),
        "set back to the default avatar",
    ),
    ("tokens.Token", "logo"): (
        lambda row: token_logo_remove(token=row),
        "logo cleared (the initial letter shows)",
    ),
}


class Command(BaseCommand):
    help = (
        "List the objects under profile_pics/ and token_logo/, and the private "
        "files under private/identity/, that no row references; with --delete "
        "remove them (and finish deletions queued "
        "while the store was down). Objects younger than --grace-minutes may be "
        "uploads in flight and are left alone, so it is safe to run at any time; "
        f"a grace period under {MIN_GRACE_MINUTES} minutes is refused. "
        "On local disk, links to folders are not followed (they are listed). "
        "With --missing, list instead the rows whose file is missing from "
        "storage (a database and a bucket restored from different times), and "
        "exit 1 if any; --missing --repair sets such avatars back to the default "
        "and clears such token logos (identity documents are only listed)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--delete", action="store_true", help="remove the unreferenced objects"
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="with --delete or --repair: only report what would be changed",
        )
        parser.add_argument(
            "--missing",
            action="store_true",
            help="list the rows whose file is missing from storage instead",
        )
        parser.add_argument(
            "--repair",
            action="store_true",
            help=(
                "with --missing: set avatars whose file is missing back to the "
                "default avatar and clear such token logos"
            ),
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
        if options["repair"] and not options["missing"]:
            raise CommandError("--repair goes with --missing.")
        if options["missing"]:
            if options["delete"]:
                raise CommandError(
                    "--missing lists rows without objects, --delete removes "
                    "objects without rows: run them one after the other."
                )
            self._missing(
                repair=options["repair"] and not options["dry_run"],
                dry_run=options["repair"] and options["dry_run"],
            )
            return
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

    def _missing(self, *, repair: bool, dry_run: bool) -> None:
        try:
            report = media_missing_collect(repair=repair, repairs=MISSING_REPAIRS)
        except (StorageUnavailable, MediaFoldersUnsafe) as exc:
            raise CommandError(str(exc)) from exc
        changed = []
        for item in report.missing:
            if item in report.repaired:
                state, advice = "repaired", item.advice
            elif item.repairable and repair:
                # Its row names another file now (a new upload): not missing.
                changed.append(item)
                state, advice = "changed", "names another file now, left as it is"
            elif item.repairable and dry_run:
                state, advice = "missing", f"would be repaired: {item.advice}"
            elif item.repairable:
                state, advice = "missing", f"--repair: {item.advice}"
            else:
                state = "missing"
                advice = item.advice or "restore the object from a backup"
            self.stdout.write(
                f"{state:<15} {item.model} #{item.pk} {item.field_name} "
                f"{item.name} ({item.row}): {advice}"
            )
        for name, rows in report.defaults_missing.items():
            self.stdout.write(
                f"{'missing':<15} {name}, the default of {rows} "
                f"{'row' if rows == 1 else 'rows'}: "
                f"{_default_restore_advice(name)}"
            )
        left = len(report.missing) - len(report.repaired) - len(changed)
        self.stdout.write(
            f"checked {report.checked}, missing {len(report.missing)}, "
            f"repaired {len(report.repaired)}, default files missing "
            f"{len(report.defaults_missing)}"
        )
        if dry_run:
            self.stdout.write("Nothing was changed (dry run).")
        elif not repair and any(item.repairable for item in report.missing):
            self.stdout.write("Nothing was changed (run with --repair to repair).")
        if left or report.defaults_missing:
            problems = []
            if left:
                problems.append(
                    f"{left} row names a file missing from storage"
                    if left == 1
                    else f"{left} rows name a file missing from storage"
                )
            if report.defaults_missing:
                problems.append("a default file is missing")
            raise CommandError(f"{' and '.join(problems)}: see the lines above.")


def _default_restore_advice(name: str) -> str:
    if isinstance(default_storage, MinIOStorage):
        return (
            "run `python manage.py setup_minio`, which uploads the default avatar again"
        )
    return (
        f"copy {name} from the repository's media/ folder into MEDIA_ROOT "
        f"({settings.MEDIA_ROOT})"
    )
