"""The accounts app's system checks (``manage.py check --deploy``) about the
mail it sends and the cache its log-in limits count in."""

from __future__ import annotations

import pytest
from django.core import checks

SMTP = "django.core.mail.backends.smtp.EmailBackend"


def _deploy_warnings() -> dict[str, checks.CheckMessage]:
    return {
        message.id: message
        for message in checks.run_checks(include_deployment_checks=True)
    }


@pytest.mark.parametrize(
    "sender",
    [
        "Crypto Exchange <no-reply@localhost>",  # the default
        "no-reply@exchange",
        "Crypto Exchange <no-reply@mail.localhost>",
        "no-reply",
    ],
)
def test_a_sender_without_a_real_domain_is_reported_when_mail_goes_out_by_smtp(
    settings, sender
):
    settings.EMAIL_BACKEND = SMTP
    settings.DEFAULT_FROM_EMAIL = sender

    warning = _deploy_warnings()["accounts.W001"]

    assert warning.level == checks.WARNING
    assert f"DEFAULT_FROM_EMAIL is {sender!r}" in warning.msg
    assert "every mail" in warning.msg
    assert "DEFAULT_FROM_EMAIL=Crypto Exchange <no-reply@" in warning.hint


@pytest.mark.parametrize(
    ("backend", "sender"),
    [
        (SMTP, "Crypto Exchange <no-reply@exchange.example.com>"),
        (SMTP, "no-reply@Example.COM"),
        # Mail printed or kept for the tests: any sender does.
        ("django.core.mail.backends.console.EmailBackend", "no-reply@localhost"),
        ("django.core.mail.backends.locmem.EmailBackend", "no-reply@localhost"),
    ],
)
def test_a_real_sender_or_mail_kept_local_passes_the_deploy_check(
    settings, backend, sender
):
    settings.EMAIL_BACKEND = backend
    settings.DEFAULT_FROM_EMAIL = sender

    assert "accounts.W001" not in _deploy_warnings()


def test_the_sender_is_checked_by_manage_py_check_deploy_only(run_python):
    env = {
        "DJANGO_SETTINGS_MODULE": "crypto_exchange.settings",
        "EMAIL_URL": "smtp+tls://user:password@smtp.example.com:587",
    }

    deploy = run_python(["manage.py", "check", "--deploy"], env)
    plain = run_python(["manage.py", "check"], env)

    assert "(accounts.W001) DEFAULT_FROM_EMAIL is" in deploy.stderr
    assert "accounts.W001" not in plain.stderr + plain.stdout


PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "crypto_exchange.settings",
    "DEBUG": "false",
    "SECRET_KEY": "k" * 20 + "-production-secret-" + "x" * 20,
    "ALLOWED_HOSTS": "exchange.example.com",
}


def test_a_cache_per_process_is_reported_as_limits_counted_per_worker(settings):
    settings.DEBUG = False

    warning = _deploy_warnings()["accounts.W002"]

    assert warning.level == checks.WARNING
    assert "REDIS_URL is not set" in warning.msg
    assert "apply per worker process" in warning.msg
    assert "using an authenticator code twice" in warning.msg
    assert "REDIS_URL=redis://" in warning.hint


def test_a_cache_per_process_is_not_reported_with_debug_on(settings):
    settings.DEBUG = True

    assert "accounts.W002" not in _deploy_warnings()


def test_the_cache_is_checked_by_manage_py_check_deploy_without_redis_url_only(
    run_python,
):
    with_redis = {**PRODUCTION_ENV, "REDIS_URL": "redis://127.0.0.1:6379/14"}

    deploy = run_python(["manage.py", "check", "--deploy"], PRODUCTION_ENV)
    plain = run_python(["manage.py", "check"], PRODUCTION_ENV)
    shared = run_python(["manage.py", "check", "--deploy"], with_redis)

    assert "(accounts.W002) The cache is each process's own memory" in deploy.stderr
    assert "accounts.W002" not in plain.stderr + plain.stdout
    assert "accounts.W002" not in shared.stderr + shared.stdout
    assert shared.returncode == 0, shared.stderr
