"""Settings come from the environment; a bad MinIO setting stops start-up."""

import json
import time
import tomllib
from pathlib import Path

import pytest

PRINT_SETTINGS = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({k: str(getattr(s, k)) for k in ["
    "'DEBUG', 'USE_MINIO', 'MINIO_ENDPOINT', 'MINIO_ACCESS_KEY', 'MINIO_SECRET_KEY', "
    "'MINIO_BUCKET_NAME', 'MINIO_USE_SSL', 'MINIO_REGION', 'MINIO_MEDIA_URL_MODE', "
    "'MAX_UPLOAD_SIZE']} | {'default': s.STORAGES['default']['BACKEND'], "
    "'static': s.STORAGES['staticfiles']['BACKEND'], "
    "'engine': s.DATABASES['default']['ENGINE']}))"
)
SETTINGS_ENV = {"DJANGO_SETTINGS_MODULE": "crypto_exchange.settings"}


def test_defaults_are_local_storage_and_sqlite(run_python):
    result = run_python(["-c", PRINT_SETTINGS], SETTINGS_ENV)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "DEBUG": "True",
        "USE_MINIO": "False",
        "MINIO_ENDPOINT": "localhost:9000",
        "MINIO_ACCESS_KEY": "minioadmin",
        "MINIO_SECRET_KEY": "minioadmin",
        "MINIO_BUCKET_NAME": "crypto-exchange",
        "MINIO_USE_SSL": "False",
        "MINIO_REGION": "us-east-1",
        "MINIO_MEDIA_URL_MODE": "public",
        "MAX_UPLOAD_SIZE": str(10 * 1024 * 1024),
        "default": "storage.filesystem.FileSystemStorage",
        "static": "whitenoise.storage.CompressedManifestStaticFilesStorage",
        "engine": "django.db.backends.sqlite3",
    }


def test_use_minio_switches_the_default_storage(run_python):
    env = {
        **SETTINGS_ENV,
        "USE_MINIO": "true",
        "MINIO_ENDPOINT": "minio:9000",
        "MINIO_BUCKET_NAME": "media-bucket",
        "MINIO_USE_SSL": "true",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/x",
    }
    result = run_python(["-c", PRINT_SETTINGS], env)

    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["default"] == "storage.backends.MinIOStorage"
    assert values["MINIO_ENDPOINT"] == "minio:9000"
    assert values["MINIO_BUCKET_NAME"] == "media-bucket"
    assert values["MINIO_USE_SSL"] == "True"
    assert values["engine"] == "django.db.backends.postgresql"


def test_dot_env_file_is_read_and_the_environment_wins(run_python, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "USE_MINIO=true\nMINIO_BUCKET_NAME=from-file\nMINIO_REGION=eu-west-1\n"
    )
    env = {**SETTINGS_ENV, "ENV_FILE": str(env_file), "MINIO_REGION": "ap-south-1"}

    result = run_python(["-c", PRINT_SETTINGS], env)

    values = json.loads(result.stdout)
    assert values["USE_MINIO"] == "True"
    assert values["MINIO_BUCKET_NAME"] == "from-file"
    assert values["MINIO_REGION"] == "ap-south-1"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MINIO_ENDPOINT", "http://localhost:9000"),
        ("MINIO_ENDPOINT", ""),
        ("MINIO_ACCESS_KEY", ""),
        ("MINIO_SECRET_KEY", ""),
        ("MINIO_BUCKET_NAME", "Not_A_Bucket"),
        ("MINIO_USE_SSL", "maybe"),
        ("MINIO_MEDIA_URL_MODE", "cdn"),
        ("MINIO_PUBLIC_URL", "media.example.com"),
        ("MINIO_DEADLINE", "0"),
        ("MINIO_DEADLINE", "30"),
        ("MINIO_DEADLINE", "soon"),
        ("MAX_UPLOAD_SIZE", "ten"),
        ("MEDIA_ACCEL_REDIRECT", "/media/"),
    ],
)
def test_a_bad_minio_setting_stops_start_up_naming_the_variable(
    run_python, variable, value
):
    env = {**SETTINGS_ENV, "USE_MINIO": "true", variable: value}

    result = run_python(["manage.py", "check"], env)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr


# What an operator sees of the list settings: the hosts answered, the origins
# trusted on a POST, a value signed with a fallback key accepted.
LIST_SETTINGS_OBSERVED = """
import django, json
django.setup()
from django.conf import settings
from django.core import signing
from django.test import Client

client = Client(enforce_csrf_checks=True)
hosts = {
    host: client.get("/healthz/", HTTP_HOST=host, secure=True).status_code
    for host in ("example.com", "www.example.com", "other.example.com")
}
token = "t" * 32
client.cookies["csrftoken"] = token
origins = {
    origin: client.post(
        "/healthz/",
        {"csrfmiddlewaretoken": token},
        HTTP_HOST="example.com",
        HTTP_ORIGIN=origin,
        secure=True,
    ).status_code
    for origin in ("https://www.example.com", "https://other.example.com")
}
fallbacks = {}
for key in ("first-old-key-" + "x" * 40, "second-old-key-" + "x" * 40):
    try:
        signing.loads(signing.dumps("session", key=key))
        fallbacks[key[:6]] = "accepted"
    except signing.BadSignature:
        fallbacks[key[:6]] = "rejected"
print(json.dumps({
    "hosts": hosts,
    "origins": origins,
    "fallbacks": fallbacks,
    "stream_cors_origins": settings.STREAM_CORS_ORIGINS,
}))
"""


def test_list_settings_take_items_written_with_a_space_after_the_comma(
    run_python, tmp_path
):
    from core.tests.processes import plain_static_root

    env = {
        **SETTINGS_ENV,
        "DEBUG": "false",
        "SECRET_KEY": "current-key-" + "y" * 40,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "STATIC_ROOT": str(plain_static_root(tmp_path)),
        "ALLOWED_HOSTS": "example.com, www.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://example.com, https://www.example.com",
        "SECRET_KEY_FALLBACKS": (
            "first-old-key-" + "x" * 40 + ", second-old-key-" + "x" * 40 + ", "
        ),
        "STREAM_CORS_ORIGINS": " http://127.0.0.1:8000 ,, http://localhost:8000",
    }

    result = run_python(["-c", LIST_SETTINGS_OBSERVED], env)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "hosts": {"example.com": 200, "www.example.com": 200, "other.example.com": 400},
        "origins": {"https://www.example.com": 200, "https://other.example.com": 403},
        "fallbacks": {"first-": "accepted", "second": "accepted"},
        "stream_cors_origins": ["http://127.0.0.1:8000", "http://localhost:8000"],
    }


@pytest.mark.parametrize(
    ("variable", "value", "hint"),
    [
        ("DATABASE_URL", "", "postgres://user@host:5432/name"),
        # The "://" forgotten: the URL holds a password, never to be printed.
        (
            "DATABASE_URL",
            "postgres//exchange:s3cret-db-password@db.example.com/exchange",
            "postgres://user@host:5432/name",
        ),
        ("CONN_MAX_AGE", "abc", "'abc'"),
        ("PREPARE_THRESHOLD", "five", "'five'"),
        ("LOG_LEVEL", "verbose", "'VERBOSE'"),
        ("EMAIL_TIMEOUT", "ten", "'ten'"),
        ("EMAIL_TIMEOUT", "0", "at least 1"),
        ("EMAIL_URL", "notaurl", "Invalid email schema"),
        ("EMAIL_URL", "smtp+tsl://user:s3cret-db-password@mail.example.com", "tsl"),
        # A "/", "#" or "?" in a password ends the host early: the parser's
        # error quoted the password as the port.
        (
            "EMAIL_URL",
            "smtp+tls://AKIA:s3cret-db-password/x@smtp.example.com:587",
            "percent-encode special characters in the user name and password "
            "(/ as %2F, # as %23, ? as %3F, @ as %40)",
        ),
        ("EMAIL_URL", "smtp+tls://u:s3cret-db-password#x@mail.example.com", "%23"),
        ("EMAIL_URL", "smtp+tls://u:s3cret-db-password?x@mail.example.com", "%3F"),
        (
            "DATABASE_URL",
            "postgres://exchange:s3cret-db-password/x@db.example.com:5432/x",
            "percent-encode special characters",
        ),
        (
            "DATABASE_URL",
            "postgres://exchange:s3cret-db-password?x@db.example.com:5432/x",
            "percent-encode special characters",
        ),
        # The "://" forgotten: start-up and /healthz/ passed, every log-in failed.
        ("REDIS_URL", "redis//127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("REDIS_URL", "http://:s3cret-db-password@127.0.0.1:6379/0", "redis://"),
        # 0 would lock every account out, turn the lock-out off, or refuse or
        # fail every avatar upload.
        ("LOGIN_FAILURES_PER_ACCOUNT", "0", "at least 1"),
        ("LOGIN_FAILURE_WINDOW_MINUTES", "0", "at least 1"),
        ("IMAGE_UPLOADS_PER_USER", "0", "at least 1"),
        ("IMAGE_UPLOAD_WINDOW_MINUTES", "0", "at least 1"),
        ("IMAGE_UPLOAD_WINDOW_MINUTES", "-5", "at least 1"),
    ],
)
def test_a_bad_database_mail_cache_or_throttle_setting_stops_start_up_naming_it(
    run_python, variable, value, hint
):
    env = {
        **SETTINGS_ENV,
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/x",
        variable: value,
    }

    result = run_python(["manage.py", "check"], env)

    assert result.returncode != 0
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"django.core.exceptions.ImproperlyConfigured: {variable} ")
    assert hint in error
    assert "s3cret-db-password" not in result.stderr


def test_a_blank_secret_key_is_refused_in_production(run_python):
    env = {**SETTINGS_ENV, "DEBUG": "false", "SECRET_KEY": "   "}

    result = run_python(["manage.py", "check"], env)

    assert result.returncode != 0
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("django.core.exceptions.ImproperlyConfigured: SECRET_KEY ")


@pytest.mark.reliability("store-refused")
def test_start_up_never_contacts_the_object_store(run_python):
    # Nothing listens on port 9 of loopback: any request would fail or hang.
    env = {**SETTINGS_ENV, "USE_MINIO": "true", "MINIO_ENDPOINT": "127.0.0.1:9"}

    started = time.monotonic()
    result = run_python(
        [
            "-c",
            "import crypto_exchange.wsgi; from django.core.files.storage import "
            "default_storage as d; print(d.url('profile_pics/a.jpg'))",
        ],
        env,
    )

    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip() == "http://127.0.0.1:9/crypto-exchange/profile_pics/a.jpg"
    )
    assert time.monotonic() - started < 30


def test_env_example_lists_every_variable_the_settings_read():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    source = (root / "crypto_exchange" / "settings.py").read_text()
    read = set(
        re.findall(
            r"(?:env\.\w+|_bool|_list|_env_or_improperly_configured)\(\s*"
            r'(?:env\.\w+,\s*)?"([A-Z_]+)"',
            source,
        )
    )
    listed = set(
        re.findall(r"^#?\s?([A-Z_]+)=", (root / ".env.example").read_text(), re.M)
    )

    assert read, "the pattern found no variable in settings.py"
    assert read - listed == set()


@pytest.mark.parametrize("secret", [None, "change-me"])
@pytest.mark.reliability("log-secrets")
def test_production_mode_requires_a_real_secret_key(run_python, secret):
    env = {**SETTINGS_ENV, "DEBUG": "false"}
    if secret is not None:
        env["SECRET_KEY"] = secret

    result = run_python(["manage.py", "check"], env)

    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_mode_starts_with_a_secret_key(run_python):
    env = {**SETTINGS_ENV, "DEBUG": "false", "SECRET_KEY": "x" * 50}

    result = run_python(["manage.py", "check"], env)

    assert result.returncode == 0, result.stderr


def test_redis_url_gives_a_cache_shared_by_every_instance(run_python):
    import uuid

    key = f"shared-{uuid.uuid4().hex}"
    env = {**SETTINGS_ENV, "REDIS_URL": "redis://127.0.0.1:6379/15"}
    code = "import django; django.setup(); from django.core.cache import cache; "

    writer = run_python(["-c", code + f"cache.set('{key}', 'from one', 30)"], env)
    reader = run_python(["-c", code + f"print(cache.get('{key}'))"], env)

    assert writer.returncode == 0, writer.stderr
    assert reader.stdout.strip() == "from one"


def test_production_settings_pass_the_deploy_check_but_for_hsts_preload(run_python):
    env = {
        **SETTINGS_ENV,
        "DEBUG": "false",
        "SECRET_KEY": "k" * 20 + "-production-secret-" + "x" * 20,
        "ALLOWED_HOSTS": "exchange.example.com",
        "SECURE_SSL_REDIRECT": "true",
        "SECURE_HSTS_SECONDS": "31536000",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    }

    result = run_python(["manage.py", "check", "--deploy"], env)

    assert "security.W021" in result.stderr  # HSTS preload: the operator's call
    assert result.stderr.count("(security.") == 1, result.stderr


def test_every_test_folder_is_collected_by_make_test():
    root = Path(__file__).resolve().parents[2]
    config = tomllib.loads((root / "pyproject.toml").read_text())
    collected = set(config["tool"]["pytest"]["ini_options"]["testpaths"])
    folders = {
        path.parent.parent.name
        for path in root.glob("*/tests/__init__.py")
        if path.parent.parent.name not in {".venv", "bench"}
    }

    assert folders - collected == set()
