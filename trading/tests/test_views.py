"""The trading pages, through the Django test client."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from trading.charts import candle_chart
from trading.models import Order, Withdrawal
from trading.selectors import Candle, market_summaries
from trading.tests.factories import (
    PASSWORD,
    balance,
    buy,
    fund,
    market_make,
    sell,
    token_make,
    user_make,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def market():
    return market_make(token_make("BTC"), token_make("USDT", decimals=6))


@pytest.fixture
def trader(client, market, reauthenticate):
    user = user_make("trader")
    fund(user, market.quote, "100000")
    fund(user, market.base, "10")
    client.force_login(user)
    reauthenticate(client, PASSWORD)
    return user


def test_the_markets_page_shows_last_price_change_and_volume(client, market):
    maker, taker = user_make("maker"), user_make("taker")
    fund(maker, market.base, "5")
    fund(taker, market.quote, "100000")
    sell(maker, market, "1", "100.00")
    buy(taker, market, "1", "100.00")
    sell(maker, market, "1", "110.00")
    buy(taker, market, "1", "110.00")

    page = client.get("/markets/").content.decode()
    [summary] = market_summaries()

    assert summary.last_price == Decimal("110")
    assert summary.change_24h == Decimal("10")
    assert summary.volume_24h == Decimal("2")
    assert "BTC" in page and "+10.00 %" in page and "2 BTC" in page


def test_placing_a_limit_order_from_the_page_locks_funds_and_lists_it(
    client, trader, market
):
    response = client.post(
        f"/markets/{market.symbol}/orders/",
        {
            "side": "buy",
            "type": "limit",
            "price": "100.00",
            "quantity": "2",
            "time_in_force": "GTC",
        },
    )

    assert response.status_code == 302
    order = Order.objects.get(user=trader)
    assert order.status == Order.Status.OPEN
    assert balance(trader, market.quote) == (Decimal("99800"), Decimal("200"))
    page = client.get(f"/markets/{market.symbol}/").content.decode()
    assert "placed (0 filled so far)" in page
    assert f"/orders/{order.pk}/cancel/" in page


def test_a_refused_order_says_why_and_changes_nothing(client, trader, market):
    client.post(
        f"/markets/{market.symbol}/orders/",
        {
            "side": "buy",
            "type": "limit",
            "price": "100.001",
            "quantity": "1",
            "time_in_force": "GTC",
        },
    )

    page = client.get(f"/markets/{market.symbol}/").content.decode()
    assert "The price 100.001 has too much precision" in page
    assert not Order.objects.exists()
    assert balance(trader, market.quote) == (Decimal("100000"), Decimal("0"))


def test_cancelling_from_the_page_releases_the_funds(client, trader, market):
    order = buy(trader, market, "1", "50.00")

    client.post(f"/markets/{market.symbol}/orders/{order.pk}/cancel/")

    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED
    assert balance(trader, market.quote) == (Decimal("100000"), Decimal("0"))


@pytest.mark.reliability("access-by-id")
def test_nobody_can_cancel_another_users_order(client, trader, market):
    other = user_make("other")
    fund(other, market.quote, "1000")
    order = buy(other, market, "1", "50.00")

    response = client.post(f"/markets/{market.symbol}/orders/{order.pk}/cancel/")

    assert response.status_code == 404
    order.refresh_from_db()
    assert order.status == Order.Status.OPEN


def test_the_live_fragment_shows_the_book_aggregated_by_price(client, trader, market):
    other = user_make("other")
    fund(other, market.base, "10")
    sell(other, market, "1", "120.00")
    sell(other, market, "2", "120.00")

    fragment = client.get(f"/markets/{market.symbol}/live/").content.decode()

    assert ">120<" in fragment and ">3<" in fragment


def test_the_market_page_costs_the_same_queries_with_more_orders(
    client, trader, market
):
    buy(trader, market, "1", "10.00")
    with CaptureQueriesContext(connection) as few:
        client.get(f"/markets/{market.symbol}/")
    for step in range(20):
        buy(trader, market, "1", f"{11 + step}.00")
    with CaptureQueriesContext(connection) as many:
        client.get(f"/markets/{market.symbol}/")

    assert len(few) == len(many)


@pytest.mark.reliability("outcome-repeat")
def test_requesting_a_withdrawal_locks_the_amount_and_a_resubmit_counts_once(
    client, trader, market
):
    form = {
        "token": "USDT",
        "amount": "250",
        "address": "T-addr-1",
        "reference": "abc123",
    }

    client.post("/wallet/", form)
    client.post("/wallet/", form)

    assert Withdrawal.objects.filter(user=trader).count() == 1
    assert balance(trader, market.quote) == (Decimal("99750"), Decimal("250"))
    assert "Pending" in client.get("/wallet/").content.decode()


@pytest.mark.reliability("overdraw")
def test_a_withdrawal_over_the_balance_is_refused_in_words(client, trader):
    response = client.post(
        "/wallet/",
        {"token": "USDT", "amount": "1000000", "address": "x", "reference": "r-1"},
    )

    assert response.status_code == 400
    assert "balance" in response.content.decode().lower()


def _pending_withdrawal(user, token, amount="250", reference="w-1"):
    from trading.services import withdrawal_request

    return withdrawal_request(
        user=user,
        token=token,
        amount=Decimal(amount),
        address="T-addr-1",
        reference=reference,
    )


def test_the_wallet_offers_to_cancel_only_pending_withdrawals(client, trader, market):
    from trading.services import withdrawal_cancel

    pending = _pending_withdrawal(trader, market.quote)
    ended = _pending_withdrawal(trader, market.quote, reference="w-2")
    withdrawal_cancel(user=trader, withdrawal=ended)

    page = client.get("/wallet/").content.decode()

    assert f'href="/wallet/withdrawals/{pending.pk}/cancel/"' in page
    assert f"/wallet/withdrawals/{ended.pk}/cancel/" not in page
    assert "Cancelled" in page


def test_cancelling_from_the_wallet_asks_to_confirm_then_releases_the_amount(
    client, trader, market, mailoutbox, django_capture_on_commit_callbacks
):
    pending = _pending_withdrawal(trader, market.quote)
    url = f"/wallet/withdrawals/{pending.pk}/cancel/"

    asked = client.get(url)
    assert balance(trader, market.quote) == (Decimal("99750"), Decimal("250"))
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(url, follow=True)

    assert "Cancel this withdrawal?" in asked.content.decode()
    assert "T-addr-1" in asked.content.decode()
    assert '<form method="post">' in asked.content.decode()
    assert "cancelled; the amount is available again" in done.content.decode()
    pending.refresh_from_db()
    assert pending.status == Withdrawal.Status.CANCELLED
    assert balance(trader, market.quote) == (Decimal("100000"), Decimal("0"))
    assert [m.subject for m in mailoutbox if "cancelled" in m.subject] == [
        "[Crypto Exchange] Withdrawal of 250 USDT cancelled"
    ]


def test_a_decided_withdrawal_is_not_cancelled_and_the_wallet_says_why(
    client, trader, market
):
    from trading.services import withdrawal_reject

    pending = _pending_withdrawal(trader, market.quote)
    staff = user_make("staffer")
    withdrawal_reject(withdrawal=pending, staff=staff, reason="Address not allowed.")

    response = client.post(f"/wallet/withdrawals/{pending.pk}/cancel/", follow=True)

    page = response.content.decode()
    assert "already rejected" in page
    assert "Address not allowed." in page  # the reason, in the history
    assert balance(trader, market.quote) == (Decimal("100000"), Decimal("0"))


@pytest.mark.reliability("access-by-id")
def test_someone_elses_withdrawal_cannot_be_cancelled(client, trader, market):
    other = user_make("other")
    fund(other, market.quote, "10")
    theirs = _pending_withdrawal(other, market.quote, amount="10")

    for method in (client.get, client.post):
        assert method(f"/wallet/withdrawals/{theirs.pk}/cancel/").status_code == 404

    theirs.refresh_from_db()
    assert theirs.status == Withdrawal.Status.PENDING


def test_a_withdrawal_over_the_daily_limit_is_refused_in_words(client, trader, market):
    market.quote.withdrawal_daily_limit = Decimal("300")
    market.quote.save()
    _pending_withdrawal(trader, market.quote)

    response = client.post(
        "/wallet/",
        {"token": "USDT", "amount": "100", "address": "x", "reference": "r-2"},
    )

    assert response.status_code == 400
    page = response.content.decode()
    assert "at most 300 USDT a day; 50 USDT is left today" in page
    assert "00:00 UTC" in page


@pytest.mark.reliability("access-anonymous")
def test_pages_need_a_login_to_trade(client, market):
    assert client.get("/wallet/").status_code == 302
    assert client.post(f"/markets/{market.symbol}/orders/", {}).status_code == 302
    assert "Log in" in client.get(f"/markets/{market.symbol}/").content.decode()


def test_the_candle_chart_keeps_every_candle_inside_the_picture():
    from datetime import UTC, datetime

    candles = [
        Candle(
            datetime(2026, 1, 1, hour, tzinfo=UTC), *map(Decimal, prices), Decimal(1)
        )
        for hour, prices in enumerate(
            [("10", "12", "9", "11"), ("11", "11", "8", "8"), ("8", "15", "8", "14")]
        )
    ]

    chart = candle_chart(candles, width=600, height=200)

    assert [shape.rising for shape in chart.shapes] == [True, False, True]
    assert chart.high == Decimal("15") and chart.low == Decimal("8")
    assert max(shape.x for shape in chart.shapes) < 600
    for shape in chart.shapes:
        assert 0 <= shape.wick_top <= shape.body_top <= shape.wick_bottom <= 200


def test_api_keys_are_made_and_revoked_from_the_profile_page(client, reauthenticate):
    from trading.models import ApiKey

    client.force_login(user_make("coder"))
    reauthenticate(client, PASSWORD)

    created = client.post(
        "/api/keys/create/", {"name": "my bot", "scopes": ["read", "trade"]}
    ).content.decode()
    key = ApiKey.objects.get(name="my bot")
    profile = client.get("/accounts/profile/").content.decode()

    assert "only time it is shown" in created
    assert f'value="{key.prefix}.' in created
    assert f"{key.prefix}.…" in profile and 'value="' + key.prefix + "." not in profile

    client.post(f"/api/keys/{key.pk}/revoke/")
    key.refresh_from_db()
    assert key.revoked_at is not None
    after = client.get("/accounts/profile/").content.decode()
    assert "“my bot” was revoked" in after
    assert f"{key.prefix}.…" not in after
