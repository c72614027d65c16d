#!/usr/bin/env python
"""Check and bootstrap the MinIO (S3) bucket of the crypto exchange.

Reads the same environment and .env as the app (MINIO_ENDPOINT,
MINIO_ACCESS_KEY, MINIO_SECRET_KEY, MINIO_BUCKET_NAME, MINIO_USE_SSL,
MINIO_MEDIA_URL_MODE, ...), then: checks the connection and the credentials,
creates the bucket if missing, grants anonymous read on the media prefixes in
``public`` URL mode (nothing in ``presigned`` or ``proxy`` mode; other
statements of the policy are kept unless they let anyone reach private/, which
fails), sets a rule aborting unfinished multipart uploads after a day, uploads
default_avatar.jpg if missing (again if stored with other headers than the
app's, as ``mc cp`` leaves it), and prints a short report. Idempotent; exits
non-zero with what to fix when something is wrong.

Same as ``python manage.py setup_minio``.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crypto_exchange.settings")
    import django
    from django.core.exceptions import ImproperlyConfigured

    try:
        django.setup()  # the settings, then the storages, which validate them
    except ImproperlyConfigured as exc:
        sys.exit(f"Configuration error: {exc}")
    from storage.management.commands.setup_minio import Command

    class Script(Command):
        def create_parser(self, prog_name, subcommand, **kwargs):
            parser = super().create_parser(prog_name, subcommand, **kwargs)
            # --help and usage errors name this script, not `manage.py setup_minio`.
            parser.prog = prog_name
            return parser

    Script().run_from_argv([Path(sys.argv[0]).name, "setup_minio", *sys.argv[1:]])


if __name__ == "__main__":
    main()
