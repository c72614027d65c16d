"""Destination addresses of withdrawals: the seeded formats of every demo
token through the service, the wallet form and the API; the address book and
its "saved addresses only" setting; the admin's pattern validation."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import SecurityEvent
from exchange.management.commands.seed_demo import DEMO_ADDRESS_FORMATS, DEMO_TOKENS
from tests.factories import (
    PASSWORD,
    balance,
    demo_address_formats,
    fund,
    token_make,
    typo,
)
from tokens.models import Token
from trading.api_keys import api_key_create
from trading.exceptions import (
    AddressAlreadySaved,
    AddressNotAllowed,
    InvalidAddress,
    TokenNotListed,
)
from trading.models import AddressFormat, LedgerEntry, SavedAddress, Withdrawal
from trading.services import (
    MAX_SAVED_ADDRESSES,
    saved_address_add,
    withdrawal_address_policy_set,
    withdrawal_request,
)

pytestmark = pytest.mark.django_db

BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
EVM = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55's first vector
EVM_WRONG_CASE = EVM[:-1] + "D"

# Real addresses of each network (published test vectors or well-known ones).
VALID = {
    "BTC": [
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
        "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",
        "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",
        "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
    ],
    "ETH": [EVM, EVM.lower()],
    "USDT": [EVM],
    "USDC": [EVM],
    "LINK": [EVM],
    "BNB": [EVM],
    "SOL": [
        "So11111111111111111111111111111111111111112",
        "11111111111111111111111111111111",
    ],
    "XRP": ["rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh"],
    "ADA": ["addr1vx2fxv2umyhttkxyxp8x0dlpdt3k6cwng5pxj3jhsydzers66hrl8"],
    "DOGE": ["DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L"],
    "DOT": ["15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5"],
    "LTC": ["LaMT348PWRnrqeeWArpwQPbuanpXDZGEUz", "MGxNPPB7eBoWPUaprtX9v9CXJZoD2465zN"],
}

# (token, address, what the message must say)
MALFORMED = [
    ("BTC", EVM, "it should be bc1"),
    ("BTC", typo(VALID["BTC"][2], 5, BASE58), "checksum does not match"),
    ("BTC", typo(VALID["BTC"][0], 10, BECH32), "checksum does not match"),
    ("BTC", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4x", "checksum"),
    ("ETH", EVM_WRONG_CASE, "EIP-55 checksum"),
    ("ETH", EVM[:-1], "0x followed by 40 hex digits"),
    ("ETH", VALID["BTC"][2], "0x followed by 40 hex digits"),
    ("USDT", EVM_WRONG_CASE, "EIP-55 checksum"),
    ("USDT", "TN3W4H6rK2ce4vX9YnFQHwKENnHjoxb3m9", "0x followed by 40 hex digits"),
    ("USDC", EVM_WRONG_CASE, "EIP-55 checksum"),
    ("LINK", EVM_WRONG_CASE, "EIP-55 checksum"),
    ("BNB", EVM_WRONG_CASE, "EIP-55 checksum"),
    ("BNB", "bnb1grpf0955h0ykzq3ar5nmum7y6gdfl6lxfn46h2", "0x followed by"),
    ("SOL", "So1111111111111111111111111111111111111111O", "32 to 44"),
    ("SOL", "So111", "32 to 44"),
    ("XRP", typo(VALID["XRP"][0], 8, BASE58), "checksum does not match"),
    ("XRP", "xHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh", "r followed by"),
    ("ADA", typo(VALID["ADA"][0], 20, BECH32), "checksum does not match"),
    ("ADA", "DdzFFzCqrhsrcTVhLygT24QwTnNqQqQ8mZrq5jykUzMveU26sxaH529kMp", "addr1"),
    ("DOGE", typo(VALID["DOGE"][0], 12, BASE58), "checksum does not match"),
    ("DOGE", VALID["BTC"][2], "D, A or 9"),
    ("DOT", typo(VALID["DOT"][0], 12, BASE58), "checksum does not match"),
    ("DOT", EVM, "1 followed by 46 or 47"),
    ("LTC", typo(VALID["LTC"][0], 12, BASE58), "checksum does not match"),
    ("LTC", VALID["BTC"][0], "ltc1"),
]


def test_every_demo_token_has_formats_and_test_cases():
    symbols = {symbol for symbol, *_ in DEMO_TOKENS}
    assert set(DEMO_ADDRESS_FORMATS) == symbols
    assert set(VALID) == symbols
    assert {symbol for symbol, *_ in MALFORMED} == symbols


@pytest.fixture
def seeded():
    """Every demo token, with the address formats seed_demo gives it."""
    tokens = {}
    for symbol, _, decimals, _ in DEMO_TOKENS:
        tokens[symbol] = demo_address_formats(token_make(symbol, decimals=decimals))
    return tokens


@pytest.fixture
def rich(alice, seeded):
    for token in seeded.values():
        fund(alice, token, "10")
    return alice


def _nothing_written(user, token, entries_before: int) -> None:
    assert not Withdrawal.objects.filter(user=user).exists()
    assert LedgerEntry.objects.count() == entries_before
    assert balance(user, token) == (D(10), D(0))


@pytest.mark.parametrize(
    ("symbol", "address"), [(s, a) for s in VALID for a in VALID[s]]
)
def test_real_addresses_of_every_seeded_token_are_accepted(
    rich, seeded, symbol, address
):
    withdrawal = withdrawal_request(
        user=rich,
        token=seeded[symbol],
        amount=D(1),
        address=address,
        memo="" if symbol == "XRP" else None,  # the demo's XRP takes a tag
        reference="r",
    )

    assert balance(rich, seeded[symbol]) == (D(9), D(1))
    assert withdrawal.address.lower() == address.lower()


@pytest.mark.parametrize(("symbol", "address", "message"), MALFORMED)
@pytest.mark.reliability("hostile-addresses")
def test_malformed_addresses_are_refused_by_the_service_and_change_nothing(
    rich, seeded, symbol, address, message
):
    entries = LedgerEntry.objects.count()

    with pytest.raises(InvalidAddress, match=message) as refusal:
        withdrawal_request(
            user=rich, token=seeded[symbol], amount=D(1), address=address, reference="r"
        )

    assert f"address for {symbol}:" in refusal.value.message
    _nothing_written(rich, seeded[symbol], entries)


@pytest.fixture
def wallet_client(client, rich, reauthenticate):
    client.force_login(rich)
    reauthenticate(client, PASSWORD)
    return client


@pytest.mark.parametrize(("symbol", "address", "message"), MALFORMED)
@pytest.mark.reliability("hostile-addresses")
def test_malformed_addresses_are_shown_next_to_the_wallet_field(
    wallet_client, rich, seeded, symbol, address, message
):
    entries = LedgerEntry.objects.count()

    response = wallet_client.post(
        "/wallet/",
        {"token": symbol, "amount": "1", "address": address, "reference": "r-1"},
    )

    assert response.status_code == 400
    [error] = response.context["form"].errors["address"]
    assert message in error and f"address for {symbol}:" in error
    assert 'id="id_address_error"' in response.content.decode()
    _nothing_written(rich, seeded[symbol], entries)


@pytest.fixture
def api_client(rich, reauthenticate):
    client = APIClient()
    client.force_login(rich)
    reauthenticate(client, PASSWORD)
    return client


@pytest.mark.parametrize(("symbol", "address", "message"), MALFORMED)
@pytest.mark.reliability("hostile-addresses")
def test_malformed_addresses_are_a_400_on_the_api(
    api_client, rich, seeded, symbol, address, message
):
    entries = LedgerEntry.objects.count()

    response = api_client.post(
        "/api/v1/withdrawals/",
        {"token": symbol, "amount": "1", "address": address, "reference": "r-1"},
        format="json",
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_address"
    assert message in error["message"]
    _nothing_written(rich, seeded[symbol], entries)


# -- The address book ---------------------------------------------------------


def test_a_saved_address_is_usable_after_the_configured_delay(settings, alice, seeded):
    settings.WITHDRAWAL_ADDRESS_DELAY_HOURS = 6
    before = timezone.now()

    saved = saved_address_add(
        user=alice, token=seeded["ETH"], address=EVM.lower(), label="Ledger"
    )

    assert saved.address == EVM  # stored with its checksum
    assert before + timedelta(hours=6) <= saved.usable_from
    assert saved.usable_from <= timezone.now() + timedelta(hours=6)


@pytest.mark.reliability("hostile-addresses")
def test_the_same_address_cannot_be_saved_twice_in_any_spelling(alice, seeded):
    saved_address_add(user=alice, token=seeded["ETH"], address=EVM, label="Ledger")

    with pytest.raises(AddressAlreadySaved, match="Ledger"):
        saved_address_add(
            user=alice,
            token=seeded["ETH"],
            address=EVM.upper().replace("0X", "0x"),
            label="Again",
        )
    # Another token (an ERC-20 on the same chain) is another entry.
    saved_address_add(user=alice, token=seeded["USDT"], address=EVM, label="Ledger")
    assert SavedAddress.objects.filter(user=alice).count() == 2


@pytest.mark.parametrize(("symbol", "address", "message"), MALFORMED[:6])
def test_a_malformed_address_is_not_saved(alice, seeded, symbol, address, message):
    with pytest.raises(InvalidAddress, match=message):
        saved_address_add(
            user=alice, token=seeded[symbol], address=address, label="Typo"
        )

    assert not SavedAddress.objects.exists()


def test_an_address_of_a_token_delisted_after_the_caller_read_it_is_not_saved(
    alice, seeded
):
    Token.objects.filter(symbol="ETH").update(is_active=False)

    with pytest.raises(TokenNotListed) as refused:
        saved_address_add(user=alice, token=seeded["ETH"], address=EVM, label="Old")

    assert refused.value.message == (
        "ETH is not listed now: its addresses cannot be saved."
    )
    assert not SavedAddress.objects.exists()


def test_without_the_setting_any_valid_address_is_accepted(rich, seeded):
    withdrawal_request(
        user=rich, token=seeded["ETH"], amount=D(1), address=EVM, reference="r"
    )

    assert balance(rich, seeded["ETH"]) == (D(9), D(1))


@pytest.mark.reliability("hostile-addresses")
def test_saved_only_refuses_an_unsaved_address_and_changes_nothing(rich, seeded):
    withdrawal_address_policy_set(user=rich, saved_only=True)
    entries = LedgerEntry.objects.count()

    with pytest.raises(AddressNotAllowed, match="not in your address book"):
        withdrawal_request(
            user=rich, token=seeded["ETH"], amount=D(1), address=EVM, reference="r"
        )

    _nothing_written(rich, seeded["ETH"], entries)


@pytest.mark.reliability("hostile-addresses")
def test_saved_only_refuses_a_new_address_until_its_delay_has_passed(rich, seeded):
    withdrawal_address_policy_set(user=rich, saved_only=True)
    saved = saved_address_add(user=rich, token=seeded["ETH"], address=EVM, label="Cold")
    entries = LedgerEntry.objects.count()

    with pytest.raises(AddressNotAllowed) as refusal:
        withdrawal_request(
            user=rich, token=seeded["ETH"], amount=D(1), address=EVM, reference="r"
        )

    when = saved.usable_from.strftime("%Y-%m-%d %H:%M UTC")
    assert refusal.value.message == (
        f"The saved address \u201cCold\u201d can be used from {when}: a newly "
        "saved address waits 24 hours."
    )
    _nothing_written(rich, seeded["ETH"], entries)

    SavedAddress.objects.filter(pk=saved.pk).update(
        usable_from=timezone.now() - timedelta(seconds=1)
    )
    withdrawal_request(  # lower case: the same address
        user=rich, token=seeded["ETH"], amount=D(1), address=EVM.lower(), reference="r"
    )
    assert balance(rich, seeded["ETH"]) == (D(9), D(1))


@pytest.mark.reliability("hostile-addresses")
def test_an_address_saved_before_its_tokens_formats_still_counts(alice):
    # Saved as typed while the token had no format; the format added since
    # spells bech32 addresses in lower case.
    btc = token_make("BTC")
    fund(alice, btc, "5")
    address = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
    saved = saved_address_add(user=alice, token=btc, address=address.upper(), label="C")
    SavedAddress.objects.filter(pk=saved.pk).update(
        usable_from=timezone.now() - timedelta(seconds=1)
    )
    withdrawal_address_policy_set(user=alice, saved_only=True)
    demo_address_formats(btc)

    made = withdrawal_request(
        user=alice, token=btc, amount=D(1), address=address.upper(), reference="r"
    )
    with pytest.raises(AddressAlreadySaved, match="“C”"):
        saved_address_add(user=alice, token=btc, address=address, label="Again")

    assert made.address == address
    assert SavedAddress.objects.filter(user=alice).count() == 1


def test_a_saved_address_is_only_for_its_token(rich, seeded):
    withdrawal_address_policy_set(user=rich, saved_only=True)
    saved_address_add(user=rich, token=seeded["ETH"], address=EVM, label="Cold")
    SavedAddress.objects.update(usable_from=timezone.now())

    with pytest.raises(AddressNotAllowed, match="USDT address is not in your"):
        withdrawal_request(
            user=rich, token=seeded["USDT"], amount=D(1), address=EVM, reference="r"
        )


@pytest.mark.reliability("hostile-addresses")
def test_turning_saved_only_off_takes_the_delay_and_on_again_cancels_it(rich, seeded):
    withdrawal_address_policy_set(user=rich, saved_only=True)

    policy = withdrawal_address_policy_set(user=rich, saved_only=False)
    ends = policy.saved_only_ends_at
    assert ends is not None and policy.saved_only_at(timezone.now())
    with pytest.raises(AddressNotAllowed):
        withdrawal_request(
            user=rich, token=seeded["ETH"], amount=D(1), address=EVM, reference="r"
        )
    # Asking again does not push the moment back.
    assert (
        withdrawal_address_policy_set(user=rich, saved_only=False).saved_only_ends_at
        == ends
    )
    # On again: no end.
    assert (
        withdrawal_address_policy_set(user=rich, saved_only=True).saved_only_ends_at
        is None
    )

    withdrawal_address_policy_set(user=rich, saved_only=False)
    policy.refresh_from_db()
    policy.saved_only_ends_at = timezone.now() - timedelta(seconds=1)
    policy.save()
    withdrawal_request(
        user=rich, token=seeded["ETH"], amount=D(1), address=EVM, reference="r"
    )
    assert balance(rich, seeded["ETH"]) == (D(9), D(1))


# -- The wallet page ----------------------------------------------------------


def test_the_wallet_saves_lists_and_removes_addresses_and_logs_them(
    wallet_client, rich, seeded
):
    response = wallet_client.post(
        "/wallet/addresses/",
        {"book-label": "Ledger", "book-token": "ETH", "book-address": EVM},
        follow=True,
    )

    page = response.content.decode()
    assert "Ledger" in page and EVM in page
    assert f'<option value="{EVM}">ETH · Ledger</option>' in page
    saved = SavedAddress.objects.get(user=rich)
    assert SecurityEvent.objects.filter(
        user=rich, kind=SecurityEvent.Kind.ADDRESS_SAVED
    ).exists()

    wallet_client.post(f"/wallet/addresses/{saved.pk}/delete/")

    assert not SavedAddress.objects.exists()
    assert SecurityEvent.objects.filter(
        user=rich, kind=SecurityEvent.Kind.ADDRESS_REMOVED
    ).exists()


def test_the_wallet_names_the_delay_of_a_saved_address_only_when_it_counts(
    wallet_client, rich, seeded
):
    def save(label: str, address: str) -> list[str]:
        response = wallet_client.post(
            "/wallet/addresses/",
            {"book-label": label, "book-token": "ETH", "book-address": address},
            follow=True,
        )
        return [str(message) for message in response.context["messages"]]

    assert save("Ledger", EVM) == ["Address “Ledger” saved."]
    withdrawal_address_policy_set(user=rich, saved_only=True)
    usable_from = timezone.now() + timedelta(hours=24)

    [message] = save("Cold", "0x" + "ab" * 20)

    assert message.startswith("Address “Cold” saved; withdrawals to it are possible")
    assert f"{usable_from:%Y-%m-%d}" in message


def test_the_wallet_shows_a_malformed_saved_address_next_to_its_field(
    wallet_client, seeded
):
    response = wallet_client.post(
        "/wallet/addresses/",
        {"book-label": "Typo", "book-token": "ETH", "book-address": EVM_WRONG_CASE},
    )

    assert response.status_code == 400
    [error] = response.context["address_form"].errors["address"]
    assert "EIP-55 checksum" in error
    assert 'id="id_book-address_error"' in response.content.decode()
    assert not SavedAddress.objects.exists()


def test_the_wallet_setting_turns_on_at_once_and_off_after_the_delay(
    wallet_client, rich, seeded
):
    wallet_client.post("/wallet/addresses/setting/", {"saved_only": "on"})
    assert rich.withdrawal_address_policy.saved_only

    response = wallet_client.post("/wallet/addresses/setting/", {}, follow=True)

    rich.withdrawal_address_policy.refresh_from_db()
    assert rich.withdrawal_address_policy.saved_only_ends_at is not None
    assert "Keep it on" in response.content.decode()
    assert (
        SecurityEvent.objects.filter(
            user=rich, kind=SecurityEvent.Kind.WITHDRAWAL_POLICY_CHANGED
        ).count()
        == 2
    )


@pytest.mark.reliability("auth-reauth")
def test_address_book_changes_ask_for_the_password_again(client, alice, seeded):
    client.force_login(alice)

    added = client.post(
        "/wallet/addresses/",
        {"book-label": "Ledger", "book-token": "ETH", "book-address": EVM},
    )
    setting = client.post("/wallet/addresses/setting/", {"saved_only": "on"})

    assert added.status_code == setting.status_code == 302
    assert "/accounts/reauthenticate/" in added["Location"]
    assert not SavedAddress.objects.exists()
    assert not hasattr(alice, "withdrawal_address_policy") or not (
        alice.withdrawal_address_policy.saved_only
    )


def test_the_wallet_form_shows_the_saved_only_refusal_next_to_the_address(
    wallet_client, rich, seeded
):
    withdrawal_address_policy_set(user=rich, saved_only=True)

    response = wallet_client.post(
        "/wallet/",
        {"token": "ETH", "amount": "1", "address": EVM, "reference": "r-1"},
    )

    assert response.status_code == 400
    assert "not in your address book" in response.context["form"].errors["address"][0]
    assert balance(rich, seeded["ETH"]) == (D(10), D(0))


def test_the_wallet_forms_refuse_a_token_that_is_not_listed(
    wallet_client, rich, seeded
):
    Token.objects.filter(symbol="ETH").update(is_active=False)
    entries = LedgerEntry.objects.count()

    withdrawn = wallet_client.post(
        "/wallet/",
        {"token": "ETH", "amount": "1", "address": EVM, "reference": "r-1"},
    )
    saved = wallet_client.post(
        "/wallet/addresses/",
        {"book-label": "Old", "book-token": "ETH", "book-address": EVM},
    )

    assert withdrawn.status_code == saved.status_code == 400
    assert "token" in withdrawn.context["form"].errors
    assert "token" in saved.context["address_form"].errors
    assert not SavedAddress.objects.exists()
    _nothing_written(rich, seeded["ETH"], entries)


# -- The API ------------------------------------------------------------------


def test_the_api_lists_adds_and_deletes_saved_addresses(api_client, rich, seeded):
    created = api_client.post(
        "/api/v1/addresses/",
        {"token": "eth", "address": EVM.lower(), "label": "Ledger"},
        format="json",
    )

    assert created.status_code == 201
    body = created.json()
    assert (body["token"], body["address"], body["label"]) == ("ETH", EVM, "Ledger")
    assert [a["id"] for a in api_client.get("/api/v1/addresses/").json()] == [
        body["id"]
    ]
    again = api_client.post(
        "/api/v1/addresses/",
        {"token": "ETH", "address": EVM, "label": "Twice"},
        format="json",
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "address_already_saved"

    assert api_client.delete(f"/api/v1/addresses/{body['id']}/").status_code == 204
    assert not SavedAddress.objects.exists()
    assert api_client.delete(f"/api/v1/addresses/{body['id']}/").status_code == 404


def test_the_api_refuses_a_malformed_saved_address(api_client, seeded):
    response = api_client.post(
        "/api/v1/addresses/",
        {"token": "BTC", "address": EVM, "label": "Wrong chain"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_address"
    assert not SavedAddress.objects.exists()


@pytest.mark.reliability("key-scope")
def test_a_read_only_api_key_may_list_but_not_add(alice, seeded):
    _, key = api_key_create(user=alice, name="bot", scopes=["read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")

    assert client.get("/api/v1/addresses/").status_code == 200
    response = client.post(
        "/api/v1/addresses/",
        {"token": "ETH", "address": EVM, "label": "Bot"},
        format="json",
    )
    assert response.status_code == 403
    assert not SavedAddress.objects.exists()


def test_the_api_answers_the_saved_only_refusal_with_its_code(api_client, rich, seeded):
    withdrawal_address_policy_set(user=rich, saved_only=True)

    response = api_client.post(
        "/api/v1/withdrawals/",
        {"token": "ETH", "amount": "1", "address": EVM, "reference": "r-1"},
        format="json",
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "address_not_allowed"
    assert not Withdrawal.objects.exists()


def _documented(method: str, path: str) -> set[int]:
    """The answers the published schema lists for an operation."""
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    return {int(status) for status in schema["paths"][path][method]["responses"]}


def test_the_api_refuses_to_save_an_address_of_a_token_not_listed_with_409(
    api_client, seeded
):
    Token.objects.filter(symbol="ETH").update(is_active=False)

    response = api_client.post(
        "/api/v1/addresses/",
        {"token": "ETH", "address": EVM, "label": "Old"},
        format="json",
    )

    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "token_not_listed",
        "message": "ETH is not listed now: its addresses cannot be saved.",
    }
    assert not SavedAddress.objects.exists()
    assert 409 in _documented("post", "/api/v1/addresses/")


def test_a_full_address_book_answers_422_as_the_schema_says(api_client, rich, seeded):
    for n in range(MAX_SAVED_ADDRESSES):
        saved_address_add(
            user=rich, token=seeded["ETH"], address=f"0x{n:040x}", label=f"#{n}"
        )

    response = api_client.post(
        "/api/v1/addresses/",
        {"token": "ETH", "address": EVM, "label": "One more"},
        format="json",
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "address_not_allowed"
    assert "remove one first" in response.json()["error"]["message"]
    assert SavedAddress.objects.filter(user=rich).count() == MAX_SAVED_ADDRESSES
    assert 422 in _documented("post", "/api/v1/addresses/")


# -- The admin ----------------------------------------------------------------


def _format_form(token, **fields) -> dict:
    return {
        "token": token.pk,
        "network": "Ethereum",
        "pattern": r"0x[0-9a-fA-F]{40}",
        "checksum": "eip55",
        "description": "0x followed by 40 hex digits",
        "example": "",
        **fields,
    }


def test_the_admin_saves_a_format_and_checks_its_example(staff_client, btc):
    eth = token_make("ETH", decimals=18)

    refused = staff_client.post(
        "/admin/trading/addressformat/add/",
        _format_form(eth, example=EVM_WRONG_CASE),
    )
    assert refused.status_code == 200
    assert "EIP-55 checksum" in refused.content.decode()

    saved = staff_client.post(
        "/admin/trading/addressformat/add/", _format_form(eth, example=EVM)
    )
    assert saved.status_code == 302
    assert AddressFormat.objects.get().token == eth


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("0x[0-9a-f{40}", "not a valid regular expression"),
        ("(a+)+", "exponential"),
        ("a{99999999999}", "not a valid regular expression"),
        (r"(?!0x0)0x[0-9a-fA-F]{40}", "Addresses are matched with RE2"),
        ("(?:[a-z]{0,1000})" * 29, "too large"),
    ],
)
@pytest.mark.parametrize("example", ["", EVM])
def test_the_admin_refuses_a_bad_pattern_saying_why(
    staff_client, btc, pattern, message, example
):
    response = staff_client.post(
        "/admin/trading/addressformat/add/",
        _format_form(btc, pattern=pattern, example=example),
    )

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not AddressFormat.objects.exists()


def test_the_admin_says_a_token_without_formats_accepts_anything(staff_client):
    page = staff_client.get("/admin/trading/addressformat/add/").content.decode()

    assert "A token with no format accepts any" in page
