"""Characters that make an address or a label read as something else: spaces,
line breaks, zero-width and text-direction characters, look-alike letters of
other alphabets. Refused in addresses with or without the token's formats and
in address-book labels, with the same message on the wallet page and the API;
shown escaped to staff where old rows may still have them."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from rest_framework.test import APIClient

from tests.factories import PASSWORD, demo_address_formats, fund, token_make
from trading.addresses import address_canonical
from trading.exceptions import InvalidAddress
from trading.models import AddressFormat, SavedAddress, Withdrawal
from trading.services import saved_address_add, withdrawal_request

EVM = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # EIP-55's first vector
RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE


@pytest.fixture
def eth(db):
    return demo_address_formats(token_make("ETH", decimals=18))


@pytest.fixture
def api(alice, reauthenticate):
    """The API as alice's signed-in browser calls it (``alice_client`` is the
    wallet page's)."""
    client = APIClient()
    client.force_login(alice)
    reauthenticate(client, PASSWORD)
    return client


# -- Addresses ----------------------------------------------------------------

# (address, what the message must name), each pasted into a token without
# formats, which used to accept it as it was.
HIDDEN = [
    (
        EVM[:38] + RLO + EVM[38:],
        "an invisible text-direction character (U+202E) at position 39",
    ),
    (EVM[:34] + "\u200b" + EVM[34:], "an invisible character (U+200B) at position 35"),
    (EVM[:20] + "\u2066" + EVM[20:] + "\u2069", "(U+2066) at position 21"),
    (EVM[:20] + "\n" + EVM[20:], "a line break (U+000A) at position 21"),
    (EVM[:20] + "\u2028" + EVM[20:], "a line break (U+2028) at position 21"),
    (EVM[:20] + "\u00a0" + EVM[20:], "a special space (U+00A0) at position 21"),
    (EVM[:20] + " " + EVM[20:], "a space at position 21"),
    (EVM[:20] + "\t" + EVM[20:], "a tab (U+0009) at position 21"),
    (EVM[:20] + "\x07" + EVM[20:], "an invisible character (U+0007) at position 21"),
    ("0x5" + "\u0430" + EVM[4:], "a non-Latin letter '\u0430' (U+0430) at position 4"),
    ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAé", "an accented letter 'é'"),
]


@pytest.mark.parametrize(("address", "named"), HIDDEN)
@pytest.mark.reliability("hostile-addresses")
def test_a_token_without_formats_refuses_characters_that_hide_what_is_sent(
    btc, address, named
):
    with pytest.raises(InvalidAddress) as refusal:
        address_canonical(token=btc, address=address)

    assert refusal.value.message.startswith("This is not a valid address for BTC:")
    assert named in refusal.value.message


def test_a_reversing_character_gets_a_message_saying_what_and_where(btc):
    with pytest.raises(InvalidAddress) as refusal:
        address_canonical(token=btc, address=EVM[:38] + RLO + EVM[38:])

    assert refusal.value.message == (
        "This is not a valid address for BTC: it contains an invisible "
        "text-direction character (U+202E) at position 39. Type or paste it "
        "again without it."
    )


@pytest.mark.parametrize(("address", "named"), HIDDEN)
def test_with_formats_such_a_character_is_named_instead_of_the_format(
    eth, address, named
):
    with pytest.raises(InvalidAddress) as refusal:
        address_canonical(token=eth, address=address)

    assert named in refusal.value.message
    assert "it should be" not in refusal.value.message


def test_a_format_whose_pattern_allows_other_alphabets_decides(btc):
    cyrillic = AddressFormat(
        token=btc,
        network="Test",
        pattern="[0-9a-z\u0430-\u044f]{4,10}",
        description="4 to 10 letters or digits",
    )

    assert address_canonical(token=btc, address="\u0430bc1", formats=[cyrillic]) == (
        "\u0430bc1"
    )
    with pytest.raises(InvalidAddress, match=r"a non-Latin letter 'Ж' \(U\+0416\)"):
        address_canonical(token=btc, address="Жbc1", formats=[cyrillic])


def test_an_api_withdrawal_to_a_reversed_address_is_refused_and_not_written(
    api, alice, btc
):
    fund(alice, btc, "3")

    response = api.post(
        "/api/v1/withdrawals/",
        {
            "token": "BTC",
            "amount": "1",
            "address": EVM[:38] + RLO + EVM[38:],
            "reference": "r-1",
        },
        format="json",
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_address"
    assert "(U+202E) at position 39" in error["message"]
    assert not Withdrawal.objects.exists()


def test_staff_see_hidden_characters_of_an_old_withdrawal_escaped(
    staff_client, alice, btc
):
    fund(alice, btc, "3")
    withdrawal = withdrawal_request(
        user=alice, token=btc, amount=D(1), address="bc1q", reference="w-1"
    )
    # Requested before such characters were refused.
    Withdrawal.objects.filter(pk=withdrawal.pk).update(
        address="0xAb" + RLO + "cd\u0430<b>"
    )

    response = staff_client.post(
        "/admin/trading/withdrawal/",
        {"action": "reject", "_selected_action": [withdrawal.pk]},
    )

    page = response.content.decode()
    assert RLO not in page and "\u0430" not in page
    assert (
        '<code>0xAb<mark title="Character U+202E, not shown as itself">\\u202e'
        '</mark>cd<mark title="Character U+0430, not shown as itself">\\u0430'
        "</mark>&lt;b&gt;</code>"
    ) in page
    for url in (
        "/admin/trading/withdrawal/",
        f"/admin/trading/withdrawal/{withdrawal.pk}/change/",
    ):
        shown = staff_client.get(url).content.decode()
        assert RLO not in shown and "\u0430" not in shown
        assert '<mark title="Character U+202E, not shown as itself">' in shown


# -- Labels -------------------------------------------------------------------

LABELS = [
    ("Ledger\nAlso saved: 0xattacker", "a line break (U+000A) at position 7"),
    ("Ledger" + RLO + "reversed", "(U+202E) at position 7"),
    ("Led\u200bger", "an invisible character (U+200B) at position 4"),
    ("Led\u2029ger", "a line break (U+2029) at position 4"),
]


def _book_saved_on_the_web(client, *, label: str, address: str = EVM) -> list[str]:
    response = client.post(
        "/wallet/addresses/",
        {"book-label": label, "book-token": "ETH", "book-address": address},
    )
    assert response.status_code == 400
    return response.context["address_form"].errors["label"]


def _book_saved_on_the_api(api, *, label: str, address: str = EVM) -> dict:
    response = api.post(
        "/api/v1/addresses/",
        {"token": "ETH", "address": address, "label": label},
        format="json",
    )
    assert response.status_code == 400
    return response.json()["error"]["fields"]["label"]


@pytest.mark.parametrize(("label", "named"), LABELS)
def test_a_label_with_a_line_break_or_invisible_character_is_refused_alike(
    alice_client, api, eth, label, named
):
    [on_the_web] = _book_saved_on_the_web(alice_client, label=label)
    [on_the_api] = _book_saved_on_the_api(api, label=label)

    assert on_the_web.startswith("The label contains ") and named in on_the_web
    assert on_the_web == on_the_api
    assert on_the_web.endswith("Use letters, digits, punctuation and spaces only.")
    assert not SavedAddress.objects.exists()


def test_a_label_with_ordinary_and_non_breaking_spaces_is_saved(alice, eth):
    saved = saved_address_add(
        user=alice, token=eth, address=EVM, label="Cold wallet\u00a0(Kraków)"
    )

    assert saved.label == "Cold wallet\u00a0(Kraków)"


def test_a_label_used_for_another_address_of_the_token_is_refused_alike(
    alice_client, api, alice, eth
):
    saved_address_add(user=alice, token=eth, address=EVM, label="Ledger")
    other = "0x" + "ab" * 20
    message = "You already have an address labelled “Ledger” for ETH"

    [on_the_web] = _book_saved_on_the_web(alice_client, label="ledger", address=other)
    [on_the_api] = _book_saved_on_the_api(api, label="Ledger", address=other)

    assert on_the_web.startswith(message.replace("“Ledger”", "“ledger”"))
    assert on_the_api.startswith(message)
    assert SavedAddress.objects.filter(user=alice).count() == 1


def test_a_label_may_be_used_again_for_another_token(alice, eth):
    usdt = demo_address_formats(token_make("USDT", decimals=6))
    saved_address_add(user=alice, token=eth, address=EVM, label="Ledger")

    saved = saved_address_add(user=alice, token=usdt, address=EVM, label="Ledger")

    assert saved.label == "Ledger"
