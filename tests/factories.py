"""Test data for every app's tests: users, tokens, markets and orders built
through the real services, and images (the root ``conftest.py`` has the
fixtures made of them)."""

from __future__ import annotations

import io
import itertools
import os
import struct
from decimal import Decimal

from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.test import APIClient

from tokens.models import Token
from tokens.services import token_create
from trading.api_keys import api_key_create
from trading.matcher import drain
from trading.models import Balance, LedgerEntry, Market, Order
from trading.orders import (
    command_refusal,
    order_cancel,
    order_place,
    order_refusal,
)
from trading.services import deposit_credit, market_create

_references = itertools.count(1)


PASSWORD = "a-test-pass-2026"


def user_make(username: str, *, verified: bool = True):
    """A user with PASSWORD and, unless asked otherwise, a verified e-mail
    address (needed to trade and withdraw)."""
    email = f"{username}@example.com"
    user = get_user_model().objects.create_user(
        username, email=email, password=PASSWORD
    )
    EmailAddress.objects.create(user=user, email=email, primary=True, verified=verified)
    return user


def sign_up(client, username: str, *, password: str = PASSWORD, **fields):
    """Post the sign-up form as a visitor would; the response."""
    return client.post(
        "/accounts/signup/",
        {
            "username": username,
            "email": f"{username}@example.com",
            "password1": password,
            "password2": password,
            **fields,
        },
    )


def browser_log_in(page, live_server, username: str) -> None:
    """Log ``username`` in through the log-in page in a real browser (with
    PASSWORD, which the user is given first); back on the profile page."""
    user = get_user_model().objects.get(username=username)
    user.set_password(PASSWORD)
    user.save()
    page.goto(f"{live_server.url}/accounts/login/")
    page.locator('input[name="login"]').fill(username)
    page.locator('input[name="password"]').fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/accounts/profile/")


def signed_in(client) -> bool:
    """Whether ``client`` is signed in: its profile page opens (a visitor is
    sent to the log-in page instead)."""
    return client.get("/accounts/profile/").status_code == 200


def key_client(
    user, *scopes: str, enforce_csrf_checks: bool = False, **options
) -> APIClient:
    """An API client authenticated with a new key of ``user``'s with
    ``scopes`` (read by default); ``options`` go to ``api_key_create``. A key
    that can withdraw must name the addresses it is used from: by default the
    test client's, 127.0.0.1."""
    scopes = scopes or ("read",)
    if "withdraw" in scopes:
        options.setdefault("allowed_ips", "127.0.0.1")
    _, key = api_key_create(user=user, name="bot", scopes=scopes, **options)
    client = APIClient(enforce_csrf_checks=enforce_csrf_checks)
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def token_make(symbol: str, *, decimals: int = 8) -> Token:
    return token_create(name=f"{symbol} token", symbol=symbol, decimals=decimals)


def demo_address_formats(token: Token, symbol: str | None = None) -> Token:
    """``token`` with the address formats seed_demo gives the token
    ``symbol`` (its own by default)."""
    from exchange.management.commands.seed_demo import (
        DEMO_ADDRESS_FORMATS,
        demo_memo_options,
    )
    from trading.services import address_format_ensure

    for network, pattern, checksum, description in DEMO_ADDRESS_FORMATS[
        symbol or token.symbol
    ]:
        address_format_ensure(
            token=token,
            network=network,
            pattern=pattern,
            checksum=checksum,
            description=description,
            **demo_memo_options(network),
        )
    return token


def market_make(base: Token, quote: Token, **options) -> Market:
    settings = {
        "price_step": Decimal("0.01"),
        "amount_step": Decimal("0.0001"),
        "min_notional": Decimal("1"),
        "maker_fee": Decimal("0.001"),
        "taker_fee": Decimal("0.002"),
        **options,
    }
    return market_create(base=base, quote=quote, **settings)


def fund(user, token: Token, amount: str | Decimal):
    return deposit_credit(
        user=user,
        token=token,
        amount=Decimal(amount),
        reference=f"test-deposit-{next(_references)}",
    )


def balance(user, token: Token) -> tuple[Decimal, Decimal]:
    """(available, locked); zero for a user who never held the token."""
    row = Balance.objects.filter(user=user, token=token).first()
    if row is None:
        return Decimal(0), Decimal(0)
    return row.available, row.locked


def fees(token: Token) -> Decimal:
    """The fee account's balance, summed from the ledger."""
    amounts = LedgerEntry.objects.filter(
        token=token, account=LedgerEntry.Account.FEES
    ).values_list("amount", flat=True)
    return sum(amounts, Decimal(0))


def buy(user, market: Market, quantity: str, price: str | None = None, **options):
    """A limit buy, or with no price a market buy (which needs a
    ``protection_price``, or ``quote_amount`` with quantity None)."""
    return _place(user, market, Order.Side.BUY, quantity, price, **options)


def sell(user, market: Market, quantity: str, price: str | None = None, **options):
    return _place(user, market, Order.Side.SELL, quantity, price, **options)


_AMOUNTS = {"quote_amount", "protection_price", "stop_price"}


def _decimal(value):
    return Decimal(value) if isinstance(value, str | int) else value


def _place(user, market, side, quantity, price, **options) -> Order:
    options = {
        name: _decimal(value) if name in _AMOUNTS else value
        for name, value in options.items()
    }
    if "type" not in options:
        options["type"] = Order.Type.LIMIT if price is not None else Order.Type.MARKET
    return place(
        user,
        market,
        side=side,
        quantity=_decimal(quantity),
        price=_decimal(price),
        **options,
    )


def place(user, market: Market, **fields) -> Order:
    """Accept an order through the real path, run the market's matcher in
    this process until its queue is empty, and return the order as matched;
    an order the matcher refuses raises its error, as the views do."""
    order = order_place(user=user, market=market, **fields)
    drain(market_id=market.pk)
    order = Order.objects.select_related("market__base", "market__quote").get(
        pk=order.pk
    )
    if (refusal := order_refusal(order)) is not None:
        raise refusal
    return order


def cancel(user, order: Order) -> Order:
    """Cancel through the real path, matcher drained; the order afterwards.
    A cancel the matcher refuses (the order closed first) raises."""
    command = order_cancel(user=user, order=order)
    drain(market_id=command.market_id)
    if (refusal := command_refusal(command)) is not None:
        raise refusal
    return Order.objects.get(pk=order.pk)


# -- Images ---------------------------------------------------------------------


def image_bytes(
    kind: str = "JPEG",
    size: tuple[int, int] = (400, 300),
    colour: tuple[int, ...] = (200, 40, 40),
    *,
    noise: bool = False,
) -> bytes:
    """An image of one colour (with alpha when ``colour`` has four values), or
    of random pixels, which do not compress (a PNG of about 3 bytes a pixel)."""
    if noise:
        image = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    else:
        image = Image.new("RGBA" if len(colour) == 4 else "RGB", size, colour)
    buffer = io.BytesIO()
    image.save(buffer, kind)
    return buffer.getvalue()


def jpeg_upload(
    size: tuple[int, int] = (400, 300), name: str = "me.jpg", **options
) -> SimpleUploadedFile:
    """A JPEG as a browser uploads it (a profile picture)."""
    return SimpleUploadedFile(
        name, image_bytes("JPEG", size, **options), content_type="image/jpeg"
    )


def png_upload(
    size: tuple[int, int] = (64, 64), name: str = "logo.png", **options
) -> SimpleUploadedFile:
    """A PNG as a browser uploads it (a token logo)."""
    return SimpleUploadedFile(
        name, image_bytes("PNG", size, **options), content_type="image/png"
    )


def jpeg_segments(data: bytes) -> list[bytes]:
    """Split a JPEG into its segments, each scan with its entropy-coded data,
    as a decoder reads them."""
    segments, position = [data[:2]], 2
    while position < len(data):
        marker = data[position + 1]
        if marker == 0xD9:
            segments.append(data[position : position + 2])
            break
        end = position + 2 + struct.unpack(">H", data[position + 2 : position + 4])[0]
        if marker == 0xDA:
            # Entropy-coded data runs to the first 0xFF that is neither stuffing
            # (0xFF00) nor a restart marker.
            while True:
                end = data.index(b"\xff", end)
                if data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                    end += 2
                    continue
                break
        segments.append(data[position:end])
        position = end
    return segments


def scan_count(data: bytes) -> int:
    return sum(segment[:2] == b"\xff\xda" for segment in jpeg_segments(data))


def jpeg_repeating_its_last_scan(
    times: int, *, mode: str = "L", size: tuple[int, int] = (64, 64)
) -> bytes:
    """A progressive JPEG from Pillow whose last scan follows itself `times`
    more times: a valid file that makes libjpeg decode that scan again each
    time, over the whole image, for a few bytes per copy."""
    buffer = io.BytesIO()
    Image.new(mode, size, 128).save(buffer, "JPEG", progressive=True, quality=50)
    segments = jpeg_segments(buffer.getvalue())
    *head, last_scan, end_of_image = segments
    assert last_scan[:2] == b"\xff\xda" and end_of_image == b"\xff\xd9"
    return b"".join(head) + last_scan * (1 + times) + end_of_image


def typo(address: str, index: int, alphabet: str) -> str:
    """The address with one character replaced by another of its alphabet."""
    current = address[index]
    replacement = next(c for c in alphabet if c not in (current, current.lower()))
    return address[:index] + replacement + address[index + 1 :]


def object_bytes(s3_client, bucket_name: str, key: str) -> bytes:
    """An object's content, read with the ``minio`` client as the tests' own."""
    response = s3_client.get_object(bucket_name=bucket_name, object_name=key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()
