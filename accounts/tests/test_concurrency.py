"""Security notices raised several times at once: real threads on PostgreSQL,
each with its own connection, released together (``tests.threads``)."""

from __future__ import annotations

import time

import pytest
from django.test import RequestFactory

from accounts.models import SecurityEvent
from accounts.services import security_notice, sign_in_record
from tests.factories import user_make
from tests.threads import run_together

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/150.0.0.0 Safari/537.36"
)


def _request(user_agent: str = FIREFOX):
    return RequestFactory().post(
        "/", REMOTE_ADDR="127.0.0.1", HTTP_USER_AGENT=user_agent
    )


def _mails_settle(smtp_server, subject: str) -> list[str]:
    """The subjects received, once the first mail with ``subject`` is in and
    any other would have been sent too."""
    smtp_server.wait_for(subject)
    time.sleep(1)
    return [mail.subject for mail in smtp_server.messages]


@pytest.mark.reliability("race-notices")
def test_a_withdrawal_notice_raised_many_times_at_once_is_logged_and_mailed_once(
    smtp_server,
):
    alice, request = user_make("alice"), _request()

    def notice() -> None:
        security_notice(
            request=request,
            user=alice,
            kind=SecurityEvent.Kind.WITHDRAWAL_REQUESTED,
            template="accounts/email/withdrawal_requested",
            context={"amount": "1", "token": "BTC", "address": "bc1q"},
            detail="1 BTC (reference w-1)",
            once=True,
        )

    results = run_together(*[notice for _ in range(8)])

    assert all(status == "ok" for status, _ in results), results
    subjects = _mails_settle(smtp_server, "Withdrawal of 1 BTC requested")
    assert len(subjects) == 1, subjects
    assert SecurityEvent.objects.filter(user=alice).count() == 1


@pytest.mark.reliability("race-notices")
def test_sign_ins_from_one_new_browser_at_once_send_one_new_sign_in_mail(
    smtp_server,
):
    alice = user_make("alice")
    sign_in_record(request=_request(FIREFOX), user=alice)  # the first: no mail

    results = run_together(
        *[
            (lambda: sign_in_record(request=_request(CHROME), user=alice))
            for _ in range(8)
        ]
    )

    assert all(status == "ok" for status, _ in results), results
    subjects = _mails_settle(smtp_server, "New sign-in")
    assert len(subjects) == 1, subjects
    assert "Chrome" in subjects[0]
    signed_in = SecurityEvent.objects.filter(
        user=alice, kind=SecurityEvent.Kind.SIGN_IN
    )
    assert signed_in.count() == 9
