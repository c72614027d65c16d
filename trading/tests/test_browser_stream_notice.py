"""The market page says when its live updates stop reaching it, in Chromium,
the page's clock run forward: the stream down, or refusing the page's origin
(the site opened as localhost while the stream allows 127.0.0.1 only)."""

import pytest
from playwright.sync_api import expect

from core.tests.processes import free_port
from trading.tests.streaming import StreamServer

pytestmark = pytest.mark.django_db(transaction=True)

NOTICE = "Live updates are not reaching this page; reload it to see the latest."


def market_page(page, live_server, market):
    """The market page on a clock the test runs; its notice's box."""
    page.clock.install()
    page.goto(f"{live_server.url}/markets/{market.symbol}/")
    notice = page.locator("#stream-notice")
    # A live region on the page, empty, from the start: one added with its
    # first line may not be announced.
    expect(notice).to_be_empty()
    expect(notice).to_have_attribute("role", "status")
    expect(notice).to_have_attribute("aria-live", "polite")
    return notice


def stream_state(page, state: str) -> None:
    """Run the page's clock on (its retries) until the stream is ``state``."""
    live = page.locator(f'#market-live[data-stream="{state}"]')
    for _ in range(30):
        if live.count():
            return
        page.clock.run_for(1000)
        page.wait_for_timeout(200)
    live.wait_for(timeout=1)


@pytest.mark.parametrize("fault", ["stream down", "origin refused"])
def test_the_market_page_says_when_live_updates_do_not_reach_it(
    fault, settings, stream_server, page, live_server, market
):
    assert live_server.url.startswith("http://localhost:")
    if fault == "stream down":
        settings.STREAM_ORIGIN = f"http://localhost:{free_port()}"
        settings.STREAM_CORS_ORIGINS = [live_server.url]
    else:  # `make run`'s stream, and the page opened as localhost
        settings.STREAM_ORIGIN = stream_server.origin
        settings.STREAM_CORS_ORIGINS = [
            live_server.url.replace("localhost", "127.0.0.1")
        ]
    notice = market_page(page, live_server, market)
    stream_state(page, "reconnecting")

    page.clock.run_for(8_000)
    expect(notice).to_be_empty()
    page.clock.run_for(3_000)
    expect(notice).to_have_text(NOTICE)
    expect(notice.locator(".alert")).to_be_visible()
    page.screenshot_step("notice")


def test_the_notice_never_shows_while_the_stream_is_open_and_goes_when_it_is_back(
    settings, stream_server, page, live_server, market
):
    settings.STREAM_ORIGIN = f"http://localhost:{stream_server.port}"
    settings.STREAM_CORS_ORIGINS = [live_server.url]
    notice = market_page(page, live_server, market)
    stream_state(page, "open")

    page.clock.run_for(60_000)
    expect(notice).to_be_empty()

    # The stream goes away (a deploy) for longer than the notice waits, and
    # comes back.
    stream_server.stop()
    stream_state(page, "reconnecting")
    page.clock.run_for(11_000)
    expect(notice).to_have_text(NOTICE)
    page.screenshot_step("stream-gone")
    restarted = StreamServer(port=stream_server.port)
    restarted.start()
    try:
        stream_state(page, "open")
        expect(notice).to_be_empty()
        page.screenshot_step("stream-back")
    finally:
        restarted.stop()
