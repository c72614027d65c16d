"""Settings of the crypto exchange, all read from the environment.

Every variable is listed with a comment in ``.env.example``; a ``.env`` file
beside ``manage.py`` is read when present (real environment variables win).
Production differs from development only by these values.
"""

import os
import re
import tempfile
import warnings
from pathlib import Path

import environ
import structlog
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from core.logs import escape_control_characters
from storage import config as storage_config

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# Variables already in the environment win over the file. ENV_FILE points
# elsewhere (tests point it at nothing, so a developer's .env cannot leak in).
environ.Env.read_env(
    env.str("ENV_FILE", default=str(BASE_DIR / ".env")), overwrite=False
)


def _env_or_improperly_configured(read, name, **kwargs):
    # django-environ raises a bare ValueError for malformed values, and an
    # ImproperlyConfigured without the variable's name for an unknown URL
    # scheme; name the variable so that a typo in .env is found at once.
    try:
        return read(name, **kwargs)
    except (ValueError, TypeError) as exc:
        if name.endswith("_URL"):
            # A "/", "#" or "?" in the password ends the host early, and the
            # parser's message then quotes the password as the port: neither
            # the message nor the chained error may be printed.
            raise ImproperlyConfigured(
                f"{name} could not be read as a URL such as "
                "scheme://user:password@host:port (is the port a number?); "
                "percent-encode special characters in the user name and "
                "password (/ as %2F, # as %23, ? as %3F, @ as %40)."
            ) from None
        raise ImproperlyConfigured(f"{name} has an invalid value: {exc}") from exc
    except ImproperlyConfigured as exc:
        raise ImproperlyConfigured(f"{name} has an invalid value: {exc}") from exc


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _bool(name: str, *, default: bool) -> bool:
    # Stricter than env.bool, which reads any unknown word as False: a typo
    # such as USE_MINIO=ture must not silently mean "off".
    raw = env.str(name, default=str(default)).strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false (got {raw!r}).")


def _list(name: str, *, default: list[str]) -> list[str]:
    # env.list splits on commas alone: "a.com, b.com" would keep " b.com",
    # a host, origin or fallback key that silently never matches.
    return [item.strip() for item in env.list(name, default=default) if item.strip()]


# On by default so that a fresh checkout runs with `manage.py runserver` alone;
# the Docker image sets DEBUG=false, and then a real SECRET_KEY is required.
DEBUG = _bool("DEBUG", default=True)
_DEVELOPMENT_SECRET_KEY = "django-insecure-development-only-never-use-in-production"  # noqa: S105
SECRET_KEY = env.str("SECRET_KEY", default=_DEVELOPMENT_SECRET_KEY)
if not DEBUG and SECRET_KEY.strip() in ("", _DEVELOPMENT_SECRET_KEY, "change-me"):
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a long random value when DEBUG=false, e.g. "
        'python -c "import secrets; print(secrets.token_urlsafe(50))"'
    )
# Earlier values, when SECRET_KEY is rotated: what they signed or encrypted
# (sessions, 2FA secrets, API keys' signing secrets) stays readable.
SECRET_KEY_FALLBACKS = _list("SECRET_KEY_FALLBACKS", default=[])
ALLOWED_HOSTS = _list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

# --- Behind a load balancer --------------------------------------------------
# The balancer terminates TLS and says so in X-Forwarded-Proto; trust it only
# when the app is reachable through the balancer alone.
if _bool("TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_TRUSTED_ORIGINS = _list("CSRF_TRUSTED_ORIGINS", default=[])
# HTTPS only unless PLAIN_HTTP says otherwise: on by default with DEBUG, and
# for local runs of the production settings (the loopback topology, the
# benchmarks); each setting below can still be chosen on its own.
PLAIN_HTTP = _bool("PLAIN_HTTP", default=DEBUG)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _bool(
    "SECURE_COOKIES", default=not PLAIN_HTTP
)
SECURE_SSL_REDIRECT = _bool("SECURE_SSL_REDIRECT", default=not PLAIN_HTTP)
# A load balancer's health checks come over plain HTTP and must get an answer.
SECURE_REDIRECT_EXEMPT = [r"^healthz/$", r"^readyz/$"]
SECURE_HSTS_SECONDS = _env_or_improperly_configured(
    env.int, "SECURE_HSTS_SECONDS", default=0 if PLAIN_HTTP else 365 * 24 * 3600
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _bool(
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not PLAIN_HTTP
)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp) on every page: scripts, styles, images
# and requests from this origin only, nothing inline, no third party. The
# object store's origin is added to img-src when browsers load media from it
# (storage.middleware); the API docs page adds data: images for Swagger UI.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

INSTALLED_APPS = [
    "accounts.admin_config.SecureAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.humanize",
    # Before whitenoise's: its runserver extends whitenoise's (see there).
    "exchange",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.usersessions",
    "storage",
    "accounts",
    "tokens",
    "trading",
    "verification",
    # Last, as its documentation asks: it deletes replaced and orphaned files
    # only after the transaction commits, and never a field's default file.
    "django_cleanup.apps.CleanupConfig",
]

# Every entry serves both handlers (Django's own, allauth's, and ours in
# core.middleware): under ASGI (the live stream) one synchronous middleware
# would make each request hold a thread for as long as it runs.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # WhiteNoise, able to serve ASGI too.
    "core.middleware.StaticFilesMiddleware",
    "storage.middleware.MediaOriginCSPMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Before the session: a refused request reads none (NUL bytes, bodies
    # over MAX_REQUEST_BODY_SIZE); after the headers' middleware (security,
    # policy, frame options), so that its answers carry them.
    "core.middleware.RequestGuardMiddleware",
    # Around everything that reads or writes the database (sessions, users,
    # views): a lost connection is answered with what it may have changed.
    "core.middleware.DatabaseWatchMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.PrivateResponseMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.middleware.SessionActivityMiddleware",
    "storage.middleware.StorageUnavailableMiddleware",
]

ROOT_URLCONF = "crypto_exchange.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.navigation",
            ],
        },
    },
]

WSGI_APPLICATION = "crypto_exchange.wsgi.application"
ASGI_APPLICATION = "crypto_exchange.asgi.application"

with warnings.catch_warnings():
    # django-environ's warning about a URL without an engine prints the parsed
    # URL, password included; the error below says what is wrong instead.
    warnings.filterwarnings("ignore", "Engine not recognized", UserWarning)
    DATABASES = {
        "default": _env_or_improperly_configured(
            env.db_url, "DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
        )
    }
if not DATABASES["default"].get("ENGINE"):
    # Never the value itself: it may hold the database's password.
    raise ImproperlyConfigured(
        "DATABASE_URL must be a URL such as postgres://user@host:5432/name or "
        "sqlite:///path/to/db.sqlite3 (no database engine could be read from it); "
        "unset it for the SQLite file db.sqlite3 beside manage.py."
    )
# Persistent connections: opening one costs more than a simple page.
DATABASES["default"]["CONN_MAX_AGE"] = _env_or_improperly_configured(
    env.int, "CONN_MAX_AGE", default=60
)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Parameters travel apart from the statement, so psycopg prepares a
    # statement a connection runs again and again (the order placement, the
    # matcher's batch writes) and PostgreSQL plans it once.
    # PREPARE_THRESHOLD=0 turns preparing off (a pooler in transaction mode
    # that does not track prepared statements needs it).
    _postgres = DATABASES["default"].setdefault("OPTIONS", {})
    _postgres.setdefault("server_side_binding", True)
    _postgres.setdefault(
        "prepare_threshold",
        _env_or_improperly_configured(env.int, "PREPARE_THRESHOLD", default=5) or None,
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the matcher write to one file: a transaction takes
    # the write lock when it begins (no lock upgrade that fails at once), a
    # writer waits up to 20 s, and readers do not wait for writers (WAL).
    _sqlite = DATABASES["default"].setdefault("OPTIONS", {})
    _sqlite.setdefault("transaction_mode", "IMMEDIATE")
    _sqlite.setdefault("timeout", 20)
    _sqlite.setdefault("init_command", "PRAGMA journal_mode=WAL;")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# One cache per process by default; REDIS_URL gives one shared by every
# instance: cached pages invalidated everywhere at once, and the log-in
# throttles counted once for all instances. Sessions stay in the database
# alone (Django's default store), whatever REDIS_URL says: a session ended on
# one instance is ended on all of them at once, even while Redis is away or
# split from some of them, which a copy kept in Redis could not promise.
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    # Never the value itself: it may hold Redis' password. Unchecked, a typo
    # passes start-up and the health checks, then fails every log-in.
    raise ImproperlyConfigured(
        "REDIS_URL must start with redis://, rediss:// or unix://, e.g. "
        "redis://127.0.0.1:6379/0; unset it for a cache per process."
    )
# While Redis cannot be reached (core.cache) the app keeps answering: the cache
# falls back to each process's memory, so throttles count per process. A call
# waits at most this long for Redis.
REDIS_TIMEOUT = _env_or_improperly_configured(env.float, "REDIS_TIMEOUT", default=1.0)
if REDIS_URL:
    _redis_options = {
        "socket_connect_timeout": REDIS_TIMEOUT,
        "socket_timeout": REDIS_TIMEOUT,
    }
    CACHES = {
        "default": {
            "BACKEND": "core.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "crypto-exchange",
            "OPTIONS": _redis_options,
        },
    }
SESSION_ENGINE = "django.contrib.sessions.backends.db"

AUTHENTICATION_BACKENDS = [
    # Django's ModelBackend, extended by allauth to log in by e-mail too; not
    # listed twice, or every failed log-in would hash the password twice.
    "allauth.account.auth_backends.AuthenticationBackend",
    # Only reads sessions signed in before 2026-12-05; see its docstring.
    "accounts.backends.SqlModelBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]

# A newly saved withdrawal address, and turning "withdraw only to saved
# addresses" off, take effect only after this many hours (trading.services).
WITHDRAWAL_ADDRESS_DELAY_HOURS = _env_or_improperly_configured(
    env.int, "WITHDRAWAL_ADDRESS_DELAY_HOURS", default=24
)
# true: a withdrawal is requested only by a user whose identity staff approved
# (verification); withdrawals requested before stay as they are.
IDENTITY_REQUIRED_TO_WITHDRAW = _bool("IDENTITY_REQUIRED_TO_WITHDRAW", default=False)

# A signed API request is accepted this many seconds either side of its
# timestamp, and a copy of it is refused (trading.api_keys).
API_SIGNATURE_WINDOW_SECONDS = _env_or_improperly_configured(
    env.int, "API_SIGNATURE_WINDOW_SECONDS", default=5
)
if not 1 <= API_SIGNATURE_WINDOW_SECONDS <= 3600:
    raise ImproperlyConfigured(
        "API_SIGNATURE_WINDOW_SECONDS must be between 1 and 3600 seconds."
    )

# Orders are matched by `manage.py run_matcher` (trading.matcher). A web
# request waits this long for its order's result before it answers that the
# order is accepted (API: 202 and the order's URL). ORDER_MATCH_INLINE is for
# tests only: requests run the matcher in their own process instead.
ORDER_RESULT_WAIT_SECONDS = _env_or_improperly_configured(
    env.float, "ORDER_RESULT_WAIT_SECONDS", default=2.0
)
ORDER_MATCH_INLINE = False
# The live market stream (trading.live, GET /api/v1/markets/<symbol>/stream/)
# is served by the ASGI process (uvicorn) and needs REDIS_URL. STREAM_ORIGIN
# is where browsers reach it: empty when a proxy routes the path to it on the
# site's own origin (deploy/nginx.conf), or another origin such as
# http://127.0.0.1:8001 (`make run`), which then lists the site's origins in
# STREAM_CORS_ORIGINS. A connection keeps at most STREAM_QUEUE_SIZE messages
# it has not sent yet; one more and it is told to resync and closed.
STREAM_ORIGIN = env.str("STREAM_ORIGIN", default="").rstrip("/")
STREAM_CORS_ORIGINS = _list("STREAM_CORS_ORIGINS", default=[])
STREAM_QUEUE_SIZE = _env_or_improperly_configured(
    env.int, "STREAM_QUEUE_SIZE", default=256
)
# /readyz/ reports each market's queue age; older than this (seconds), the
# matcher is taken to be down and the instance unready. 0: report only.
MATCHER_QUEUE_MAX_AGE_SECONDS = _env_or_improperly_configured(
    env.float, "MATCHER_QUEUE_MAX_AGE_SECONDS", default=0
)

# Requests to the JSON API per signed-in user or API key's user (all of a
# user's keys together), and per client address without either; one more is
# answered 429 `rate_limited` with Retry-After (trading.api.views). Counted
# in the cache: once for all instances with REDIS_URL, per process without.
_THROTTLE_RATE = r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)"
API_THROTTLE_USER = env.str("API_THROTTLE_USER", default="1200/minute")
API_THROTTLE_ANON = env.str("API_THROTTLE_ANON", default="300/minute")
for _name, _rate in (
    ("API_THROTTLE_USER", API_THROTTLE_USER),
    ("API_THROTTLE_ANON", API_THROTTLE_ANON),
):
    if not re.fullmatch(_THROTTLE_RATE, _rate):
        raise ImproperlyConfigured(
            f"{_name} must be a number of requests per second, minute, hour or "
            f"day, such as 1200/minute (got {_rate!r})."
        )

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Amounts travel as strings, never floats.
    "COERCE_DECIMAL_TO_STRING": True,
    "EXCEPTION_HANDLER": "trading.api.exceptions.exception_handler",
    # JSON nested deeper than any request needs is a 400, not a RecursionError.
    "DEFAULT_PARSER_CLASSES": ["core.parsers.JSONParser"],
    # OPTIONS answers without describing bodies from a serializer_class, which
    # the API's views do not have (the schema describes them).
    "DEFAULT_METADATA_CLASS": "core.metadata.ApiMetadata",
    "DEFAULT_THROTTLE_RATES": {"user": API_THROTTLE_USER, "anon": API_THROTTLE_ANON},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Crypto Exchange API",
    "DESCRIPTION": (BASE_DIR / "trading" / "api" / "description.md").read_text(),
    "VERSION": "1",
    # Request bodies get components of their own, so that what a request must
    # carry is published (a required text field is not blank: minLength 1).
    "COMPONENT_SPLIT_REQUEST": True,
    # Answers that come before any view (414, 413, 415) on every operation.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "trading.api.schema.transport_errors",
    ],
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Accounts (django-allauth) ----------------------------------------------
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "accounts:profile"
ACCOUNT_LOGOUT_REDIRECT_URL = "home"
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
ACCOUNT_FORMS = {
    "add_email": "accounts.forms.AddEmailForm",
    "login": "accounts.forms.LoginForm",
    "reset_password": "accounts.forms.ResetPasswordForm",
    "signup": "accounts.forms.SignupForm",
}
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "email*", "password1*", "password2*"]
# Browsing and the profile work unverified; the first order or withdrawal
# needs a verified address (trading.services).
ACCOUNT_EMAIL_VERIFICATION = "optional"
ACCOUNT_UNIQUE_EMAIL = True
# One address per account; a new one replaces it once it is verified.
ACCOUNT_CHANGE_EMAIL = True
ACCOUNT_EMAIL_NOTIFICATIONS = True
# Changing the password or e-mail, or turning 2FA off, asks for the password
# (or a code) again when the last sign-in is older than this.
ACCOUNT_REAUTHENTICATION_REQUIRED = True
ACCOUNT_REAUTHENTICATION_TIMEOUT = 300
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Crypto Exchange] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "http" if PLAIN_HTTP else "https"
ACCOUNT_PASSWORD_RESET_BY_CODE_ENABLED = False
# Throttles, shared by every instance through the cache (Redis with REDIS_URL).
# A failed log-in counts against the account and the address; after the limit
# even the right password is refused until the window has passed. Sign-up is
# throttled harder than log-in, so that probing it for taken usernames is no
# faster than guessing on the log-in form, and every throttle stops a request
# before any password is hashed.
LOGIN_FAILURES_PER_ACCOUNT = _env_or_improperly_configured(
    env.int, "LOGIN_FAILURES_PER_ACCOUNT", default=5
)
LOGIN_FAILURE_WINDOW_MINUTES = _env_or_improperly_configured(
    env.int, "LOGIN_FAILURE_WINDOW_MINUTES", default=15
)
# 0 failures would refuse even the first right password; a window of 0
# minutes would turn the lock-out off.
if LOGIN_FAILURES_PER_ACCOUNT < 1:
    raise ImproperlyConfigured(
        f"LOGIN_FAILURES_PER_ACCOUNT must be at least 1 "
        f"(got {LOGIN_FAILURES_PER_ACCOUNT})."
    )
if LOGIN_FAILURE_WINDOW_MINUTES < 1:
    raise ImproperlyConfigured(
        f"LOGIN_FAILURE_WINDOW_MINUTES must be a whole number of minutes, at "
        f"least 1 (got {LOGIN_FAILURE_WINDOW_MINUTES})."
    )
ACCOUNT_RATE_LIMITS = {
    "login": "10/m/ip,100/h/ip",
    "login_failed": (
        f"{2 * LOGIN_FAILURES_PER_ACCOUNT}/{LOGIN_FAILURE_WINDOW_MINUTES}m/ip"
    ),
    # Counted by the account's row, whatever name or Host header was sent
    # (accounts.adapter); allauth's own per-name count is left out.
    "login_failed_account": (
        f"{LOGIN_FAILURES_PER_ACCOUNT}/{LOGIN_FAILURE_WINDOW_MINUTES}m/key"
    ),
    "signup": "5/m/ip,20/h/ip",
    "reset_password": "5/m/ip,3/15m/key",
    "reset_password_from_key": "10/m/ip",
    "reauthenticate": "5/m/user",
    "change_password": "5/m/user",
    "manage_email": "5/m/user",
    "confirm_email": "1/3m/key",
}
# How many proxies (nginx, a load balancer) stand in front of the app and add
# to X-Forwarded-For: the client's address is read from that many places from
# the right. 0: the connection's address, and X-Forwarded-For is ignored.
ALLAUTH_TRUSTED_PROXY_COUNT = _env_or_improperly_configured(
    env.int, "TRUSTED_PROXY_COUNT", default=0
)
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
# Encrypts the TOTP secrets and recovery-code seeds it stores (SECRET_KEY).
MFA_ADAPTER = "accounts.mfa.MFAAdapter"
MFA_FORMS = {
    "authenticate": "accounts.forms.AuthenticateForm",
    "reauthenticate": "accounts.forms.ReauthenticateForm",
}
MFA_TOTP_ISSUER = "Crypto Exchange"
USERSESSIONS_TRACK_ACTIVITY = True
# Logs every ending of sessions, allauth's Sessions page's too.
USERSESSIONS_ADAPTER = "accounts.usersessions.UserSessionsAdapter"

# E-mail: printed on the console by default (development); SMTP in
# production, e.g. EMAIL_URL=smtp+tls://user:password@smtp.example.com:587
vars().update(
    _env_or_improperly_configured(env.email_url, "EMAIL_URL", default="consolemail://")
)
DEFAULT_FROM_EMAIL = env.str(
    "DEFAULT_FROM_EMAIL", default="Crypto Exchange <no-reply@localhost>"
)
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Seconds to wait for the mail server (connecting, and each answer). Without
# it Django's SMTP backend waits for ever on a server that accepts the
# connection and never answers, and the request with it, past gunicorn's
# timeout. One request gives up on mail once a mail was lost that way
# (accounts.adapter), so it waits this long at most once.
EMAIL_TIMEOUT = _env_or_improperly_configured(env.int, "EMAIL_TIMEOUT", default=10)
if EMAIL_TIMEOUT < 1:
    raise ImproperlyConfigured(
        f"EMAIL_TIMEOUT must be a whole number of seconds, at least 1 "
        f"(got {EMAIL_TIMEOUT})."
    )

MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(BASE_DIR / "media")))
# Private files (identity documents) with USE_MINIO=false: a folder of their
# own that no web server serves, refused when it overlaps MEDIA_ROOT. With
# USE_MINIO=true they are in the bucket under private/, and media_to_bucket
# copies this folder there.
PRIVATE_MEDIA_ROOT = storage_config.validate_private_media_root(
    Path(env.str("PRIVATE_MEDIA_ROOT", default=str(BASE_DIR / "private_media"))),
    media_root=MEDIA_ROOT,
)

# Uploads: the largest file accepted, and the largest image in pixels (checked
# from the header before any decoding, against decompression bombs).
MAX_UPLOAD_SIZE = _env_or_improperly_configured(
    env.int, "MAX_UPLOAD_SIZE", default=10 * 1024 * 1024
)
MAX_IMAGE_PIXELS = _env_or_improperly_configured(
    env.int, "MAX_IMAGE_PIXELS", default=40_000_000
)
# Bytes of decoded pixels one image may cost (storage.images counts them by
# format and bit depth, after JPEG's reduced decoding): bounds each upload's
# memory and CPU. And image uploads per user in a window, shared by every
# instance through the cache, so no account can keep the workers decoding.
MAX_IMAGE_DECODE_BYTES = _env_or_improperly_configured(
    env.int, "MAX_IMAGE_DECODE_BYTES", default=64 * 1024 * 1024
)
IMAGE_UPLOADS_PER_USER = _env_or_improperly_configured(
    env.int, "IMAGE_UPLOADS_PER_USER", default=6
)
IMAGE_UPLOAD_WINDOW_MINUTES = _env_or_improperly_configured(
    env.int, "IMAGE_UPLOAD_WINDOW_MINUTES", default=10
)
if IMAGE_UPLOADS_PER_USER < 1:
    raise ImproperlyConfigured(
        f"IMAGE_UPLOADS_PER_USER must be at least 1 (got {IMAGE_UPLOADS_PER_USER})."
    )
if IMAGE_UPLOAD_WINDOW_MINUTES < 1:
    raise ImproperlyConfigured(
        f"IMAGE_UPLOAD_WINDOW_MINUTES must be a whole number of minutes, at "
        f"least 1 (got {IMAGE_UPLOAD_WINDOW_MINUTES})."
    )
# Images decoded at once on this host, by all its workers together
# (storage.decode_slots: a flock on one of that many files in the folder, so
# every process sharing the folder shares the slots); an upload that finds
# none free is refused with "try again in a few seconds".
# By default half the CPUs this process may run on: sched_getaffinity sees a
# container's cpuset, os.cpu_count() the whole host (as in gunicorn.conf.py).
_usable_cpus = (
    len(os.sched_getaffinity(0))
    if hasattr(os, "sched_getaffinity")
    else os.cpu_count() or 2
)
IMAGE_DECODE_SLOTS = _env_or_improperly_configured(
    env.int, "IMAGE_DECODE_SLOTS", default=max(1, _usable_cpus // 2)
)
if IMAGE_DECODE_SLOTS < 1:
    raise ImproperlyConfigured("IMAGE_DECODE_SLOTS must be at least 1.")
IMAGE_DECODE_SLOTS_DIR = Path(
    env.str(
        "IMAGE_DECODE_SLOTS_DIR",
        default=str(Path(tempfile.gettempdir()) / "crypto-exchange-image-decodes"),
    )
)
# Identity documents (verification): the largest file accepted, and how long
# the presigned URL staff get to open one lives (S3 in public/presigned mode).
IDENTITY_DOCUMENT_MAX_SIZE = _env_or_improperly_configured(
    env.int, "IDENTITY_DOCUMENT_MAX_SIZE", default=8 * 1024 * 1024
)
IDENTITY_DOCUMENT_URL_EXPIRY = _env_or_improperly_configured(
    env.int, "IDENTITY_DOCUMENT_URL_EXPIRY", default=60
)
if not 1 <= IDENTITY_DOCUMENT_URL_EXPIRY <= 3600:
    raise ImproperlyConfigured(
        "IDENTITY_DOCUMENT_URL_EXPIRY must be between 1 and 3600 seconds."
    )
# Django refuses a request body larger than this before any view runs; leave
# room for the other form fields around the file.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
# The largest request body the app reads at all, nginx in front or not: a
# larger one is refused (413) by its Content-Length before a byte of it is
# read (core.middleware). The largest form sends three identity documents
# (verification) besides its other fields.
MAX_REQUEST_BODY_SIZE = _env_or_improperly_configured(
    env.int,
    "MAX_REQUEST_BODY_SIZE",
    default=max(MAX_UPLOAD_SIZE, 3 * IDENTITY_DOCUMENT_MAX_SIZE)
    + DATA_UPLOAD_MAX_MEMORY_SIZE,
)
if MAX_REQUEST_BODY_SIZE < 1:
    raise ImproperlyConfigured("MAX_REQUEST_BODY_SIZE must be at least 1 byte.")

# --- Object storage --------------------------------------------------------

USE_MINIO = _bool("USE_MINIO", default=False)
MINIO_ENDPOINT = env.str("MINIO_ENDPOINT", default="localhost:9000")
MINIO_ACCESS_KEY = env.str("MINIO_ACCESS_KEY", default="minioadmin")
MINIO_SECRET_KEY = env.str("MINIO_SECRET_KEY", default="minioadmin")
MINIO_BUCKET_NAME = env.str("MINIO_BUCKET_NAME", default="crypto-exchange")
MINIO_USE_SSL = _bool("MINIO_USE_SSL", default=False)
MINIO_REGION = env.str("MINIO_REGION", default="us-east-1")
MINIO_PUBLIC_URL = env.str("MINIO_PUBLIC_URL", default="")
MINIO_MEDIA_URL_MODE = env.str("MINIO_MEDIA_URL_MODE", default="public")
MINIO_PRESIGNED_EXPIRY = _env_or_improperly_configured(
    env.int, "MINIO_PRESIGNED_EXPIRY", default=3600
)
MINIO_CONNECT_TIMEOUT = _env_or_improperly_configured(
    env.float, "MINIO_CONNECT_TIMEOUT", default=3.0
)
MINIO_READ_TIMEOUT = _env_or_improperly_configured(
    env.float, "MINIO_READ_TIMEOUT", default=10.0
)
MINIO_MAX_RETRIES = _env_or_improperly_configured(
    env.int, "MINIO_MAX_RETRIES", default=2
)
# One request to the store, retries included, ends within this (a hung store
# must not hold a worker until gunicorn's 30 s timeout kills it).
MINIO_DEADLINE = _env_or_improperly_configured(
    env.float, "MINIO_DEADLINE", default=storage_config.DEFAULT_DEADLINE
)

# The MINIO_* values are checked where they are used, by MinIOStorage, which
# every process builds while its apps load (storage/config.py).
if USE_MINIO:
    _default_storage = {"BACKEND": "storage.backends.MinIOStorage"}
    # The same bucket and client: private keys stay under private/, which no
    # bucket policy grants and the media view refuses.
    _private_storage = _default_storage
else:
    # Django's FileSystemStorage, but a file it cannot write (a full disk) is
    # removed again and refused with the storage app's error (storage.filesystem).
    _default_storage = {
        "BACKEND": "storage.filesystem.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT, "base_url": MEDIA_URL},
    }
    # Same keys (private/identity/...) as in the bucket, in a folder outside
    # MEDIA_ROOT. No base_url of its own (None falls back to MEDIA_URL, where
    # nothing serves these files); their fields refuse url() anyway.
    _private_storage = {
        "BACKEND": "storage.filesystem.FileSystemStorage",
        "OPTIONS": {"location": PRIVATE_MEDIA_ROOT, "base_url": None},
    }

STORAGES = {
    "default": _default_storage,
    "private": _private_storage,
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage",
    },
}

# Django serves /media/ itself (through storage.views) when nothing else does:
# in development, and in the MinIO ``proxy`` URL mode.
MEDIA_SERVE = _bool(
    "MEDIA_SERVE", default=DEBUG or (USE_MINIO and MINIO_MEDIA_URL_MODE == "proxy")
)
# In the proxy mode, behind an nginx configured for it (deploy/nginx.conf): the
# media view checks the path and hands the download to nginx with an
# X-Accel-Redirect to this internal location, so no worker waits on the store
# or the browser. Empty (the default): the app streams each object itself.
MEDIA_ACCEL_REDIRECT = storage_config.validate_accel_redirect(
    env.str("MEDIA_ACCEL_REDIRECT", default=""), media_url=MEDIA_URL
)

# One line per event, key=value (logfmt) like gunicorn's access log, so that
# `grep 'event="storage failure"'` or `grep rid=<id>` finds it; a traceback
# stays on its line as exception="...". Extra fields a call passes
# (``logger.warning("storage failure", extra={...})``) become keys, and under
# gunicorn every line carries the request's rid (gunicorn.conf.py binds it).
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").strip().upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(
        "LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL "
        f"(got {LOG_LEVEL!r})."
    )
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "logfmt": {
            "()": structlog.stdlib.ProcessorFormatter,
            "foreign_pre_chain": [
                structlog.contextvars.merge_contextvars,
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(),
                structlog.processors.format_exc_info,
            ],
            "processors": [
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                # A path or name with a CR, NUL or other control character
                # stays on its line, as an escape (core.logs).
                escape_control_characters,
                structlog.processors.LogfmtRenderer(
                    key_order=["ts", "level", "logger", "event"]
                ),
            ],
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "logfmt"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # urllib3 logs every retry of the object-store client; the storage logs
    # the outcome once, with what to check.
    "loggers": {"urllib3": {"level": "ERROR"}},
}
