"""Memos (destination tags): a network whose format names one needs it said
with each withdrawal, given or explicitly none; it is checked as the network
writes it, part of what a repeat and the saved-addresses-only setting
compare, and shown wherever the address is."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from django.test import Client
from django.utils import timezone

from tests.factories import balance, demo_address_formats, fund, token_make
from tests.forms import form_values
from trading.exceptions import (
    AddressAlreadySaved,
    AddressNotAllowed,
    DuplicateReference,
    InvalidMemo,
    MemoRequired,
)
from trading.models import AddressFormat, LedgerEntry, SavedAddress, Withdrawal
from trading.services import (
    address_format_ensure,
    saved_address_add,
    withdrawal_address_policy_set,
    withdrawal_request,
)

pytestmark = pytest.mark.django_db

XRP_ADDRESS = "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh"
BTC_ADDRESS = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
ATOM_ADDRESS = "cosmos1hsk6jryyqjfhp5dhc55tc9jtckygx0eph6dd02"
TAG = "3052514"
NEEDED = (
    "XRP Ledger takes a destination tag with each transaction: exchanges and "
    "custodians usually need it"
)


@pytest.fixture
def xrp(alice):
    """XRP on the XRP Ledger, with destination tags; alice has 100."""
    token = token_make("XRP", decimals=6)
    address_format_ensure(
        token=token,
        network="XRP Ledger",
        pattern=r"r[1-9A-HJ-NP-Za-km-z]{24,34}",
        checksum="base58check_xrp",
        description="r followed by 24 to 34 letters and digits",
        memo_name="Destination tag",
        memo_pattern="[0-9]{1,10}",
    )
    fund(alice, token, "100")
    return token


@pytest.fixture
def atom(alice):
    """ATOM on the Cosmos Hub, with memos of any text; alice has 100."""
    token = token_make("ATOM", decimals=6)
    address_format_ensure(
        token=token,
        network="Cosmos Hub",
        pattern=r"cosmos1[0-9a-z]{38}",
        checksum="bech32",
        description="cosmos1 followed by 38 letters and digits",
        memo_name="Memo",
    )
    fund(alice, token, "100")
    return token


@pytest.fixture
def bitcoin(alice, btc):
    """BTC with seed_demo's formats, which take no memo; alice has 100."""
    demo_address_formats(btc)
    fund(alice, btc, "100")
    return btc


@pytest.fixture
def wallet(alice_client):
    return alice_client


@pytest.fixture
def api(as_alice):
    return as_alice


def _withdraw(user, token, address=XRP_ADDRESS, *, memo=None, reference="r-1"):
    return withdrawal_request(
        user=user,
        token=token,
        amount=D(1),
        address=address,
        reference=reference,
        memo=memo,
    )


def _withdraw_api(api, **fields):
    body = {"amount": "10", "reference": "r-1", **fields}
    return api.post("/api/v1/withdrawals/", body, format="json")


def _nothing_locked(user, token) -> None:
    assert not Withdrawal.objects.filter(user=user).exists()
    assert not LedgerEntry.objects.filter(transaction__withdrawal__isnull=False)
    assert balance(user, token) == (D(100), D(0))


# -- The service ----------------------------------------------------------------


def test_a_network_taking_a_memo_needs_one_given_or_said_to_be_none(alice, xrp):
    with pytest.raises(MemoRequired) as refusal:
        _withdraw(alice, xrp)

    assert refusal.value.message.startswith(NEEDED)
    _nothing_locked(alice, xrp)

    tagged = _withdraw(alice, xrp, memo=f"  {TAG} ")
    untagged = _withdraw(alice, xrp, memo="", reference="r-2")

    assert (tagged.memo, untagged.memo) == (TAG, "")
    assert balance(alice, xrp) == (D(98), D(2))


def test_a_network_taking_no_memo_needs_none_said_and_refuses_one(alice, bitcoin):
    assert _withdraw(alice, bitcoin, BTC_ADDRESS).memo == ""

    with pytest.raises(InvalidMemo) as refusal:
        _withdraw(alice, bitcoin, BTC_ADDRESS, memo="123", reference="r-2")

    assert refusal.value.message == (
        "BTC on Bitcoin, SegWit takes no memo: leave the memo empty."
    )
    assert Withdrawal.objects.filter(user=alice).count() == 1


def test_a_token_without_formats_refuses_a_memo(alice):
    token = token_make("XYZ")
    fund(alice, token, "100")

    with pytest.raises(InvalidMemo, match="No networks are set up for XYZ"):
        _withdraw(alice, token, "anything", memo="7")
    _nothing_locked(alice, token)


@pytest.mark.parametrize(
    ("memo", "message"),
    [
        (
            "abc",
            "This is not a valid destination tag for XRP Ledger: it must match the "
            "pattern [0-9]{1,10}.",
        ),
        ("12345678901", "it must match the pattern [0-9]{1,10}"),
        ("30\u200b52", "an invisible character (U+200B) at position 3"),
        ("30\u202e52", "an invisible text-direction character (U+202E)"),
        ("30\n52", "a line break (U+000A) at position 3"),
        ("\uff13\uff10", "a character '\uff13' (U+FF13) at position 1"),
    ],
)
def test_a_memo_not_written_as_the_network_writes_them_is_refused(
    alice, xrp, memo, message
):
    with pytest.raises(InvalidMemo) as refusal:
        _withdraw(alice, xrp, memo=memo)

    assert message in refusal.value.message
    _nothing_locked(alice, xrp)


def test_without_a_pattern_a_memo_is_any_printable_text_up_to_256(alice, atom):
    given = _withdraw(alice, atom, ATOM_ADDRESS, memo="Customer 42 / invoice #7")
    with pytest.raises(InvalidMemo, match="at most 256 characters; this one has 257"):
        _withdraw(alice, atom, ATOM_ADDRESS, memo="x" * 257, reference="r-2")

    assert given.memo == "Customer 42 / invoice #7"


def test_a_repeat_with_another_memo_is_a_different_request(alice, xrp):
    first = _withdraw(alice, xrp, memo=TAG)

    with pytest.raises(DuplicateReference):
        _withdraw(alice, xrp, memo="999")
    with pytest.raises(DuplicateReference):
        _withdraw(alice, xrp, memo="")
    repeat = _withdraw(alice, xrp, memo=TAG)

    assert repeat == first
    assert balance(alice, xrp) == (D(99), D(1))


def test_a_repeat_of_a_request_made_before_memos_without_one_is_the_same(alice, xrp):
    # Requested before this version, which asked for no memo.
    first = _withdraw(alice, xrp, memo="")

    repeat = _withdraw(alice, xrp)

    assert repeat.pk == first.pk
    assert balance(alice, xrp) == (D(99), D(1))


def test_saved_only_allows_the_saved_address_with_its_memo_alone(alice, xrp):
    withdrawal_address_policy_set(user=alice, saved_only=True)
    saved_address_add(user=alice, token=xrp, address=XRP_ADDRESS, label="Bitstamp")
    saved_address_add(
        user=alice, token=xrp, address=XRP_ADDRESS, label="Kraken", memo=TAG
    )
    SavedAddress.objects.update(usable_from=timezone.now())

    with pytest.raises(AddressNotAllowed) as refusal:
        _withdraw(alice, xrp, memo="999")

    assert "address with memo 999 is not in your address book" in (
        refusal.value.message
    )
    assert "saved with another memo" in refusal.value.message
    _nothing_locked(alice, xrp)
    assert _withdraw(alice, xrp, memo=TAG).memo == TAG
    assert _withdraw(alice, xrp, memo="", reference="r-2").memo == ""


def test_saved_only_refuses_no_memo_when_only_a_memo_is_saved(alice, xrp):
    withdrawal_address_policy_set(user=alice, saved_only=True)
    saved_address_add(
        user=alice, token=xrp, address=XRP_ADDRESS, label="Kraken", memo=TAG
    )
    SavedAddress.objects.update(usable_from=timezone.now())

    with pytest.raises(AddressNotAllowed, match="saved with another memo"):
        _withdraw(alice, xrp, memo="")
    _nothing_locked(alice, xrp)


def test_one_address_is_saved_once_per_memo(alice, xrp, bitcoin):
    saved_address_add(user=alice, token=xrp, address=XRP_ADDRESS, label="A", memo="1")
    saved_address_add(user=alice, token=xrp, address=XRP_ADDRESS, label="B", memo="2")

    with pytest.raises(AddressAlreadySaved, match="with memo 1 is already"):
        saved_address_add(
            user=alice, token=xrp, address=XRP_ADDRESS, label="C", memo=" 1 "
        )
    with pytest.raises(InvalidMemo, match="destination tag for XRP Ledger"):
        saved_address_add(
            user=alice, token=xrp, address=XRP_ADDRESS, label="D", memo="x"
        )
    with pytest.raises(InvalidMemo, match="BTC on Bitcoin, SegWit takes no memo"):
        saved_address_add(
            user=alice, token=bitcoin, address=BTC_ADDRESS, label="E", memo="1"
        )
    assert sorted(SavedAddress.objects.values_list("memo", flat=True)) == ["1", "2"]


# -- The wallet -----------------------------------------------------------------


def test_the_wallet_asks_for_a_memo_or_its_absence(wallet, alice, xrp):
    form = {"token": "XRP", "amount": "10", "address": XRP_ADDRESS, "reference": "r"}

    refused = wallet.post("/wallet/", form)

    assert refused.status_code == 400
    [error] = refused.context["form"].errors["memo"]
    assert error.startswith(NEEDED)
    page = refused.content.decode()
    assert "Destination tag" in page
    assert 'name="no_memo"' in page
    assert "The recipient needs no memo" in page
    _nothing_locked(alice, xrp)

    both = wallet.post("/wallet/", {**form, "memo": TAG, "no_memo": "on"})

    assert both.status_code == 400
    assert both.context["form"].errors["memo"] == [
        "Give the memo, or tick “The recipient needs no memo”, not both."
    ]
    _nothing_locked(alice, xrp)

    wallet.post("/wallet/", {**form, "memo": TAG})
    wallet.post("/wallet/", {**form, "reference": "r-2", "no_memo": "on"})

    assert sorted(Withdrawal.objects.values_list("memo", flat=True)) == ["", TAG]


def test_the_wallet_puts_a_wrong_memo_on_the_memo_field(wallet, alice, xrp):
    form = {"token": "XRP", "amount": "10", "address": XRP_ADDRESS, "reference": "r"}

    refused = wallet.post("/wallet/", {**form, "memo": "tag"})

    assert refused.status_code == 400
    [error] = refused.context["form"].errors["memo"]
    assert "not a valid destination tag for XRP Ledger" in error
    _nothing_locked(alice, xrp)


def test_the_wallet_has_no_memo_field_when_no_network_takes_one(wallet, bitcoin):
    page = wallet.get("/wallet/").content.decode()

    assert 'name="memo"' not in page
    assert 'name="no_memo"' not in page
    assert 'name="book-memo"' not in page


def test_the_wallet_and_cancel_page_show_the_memo(wallet, alice, xrp):
    withdrawal = _withdraw(alice, xrp, memo=TAG)

    page = wallet.get("/wallet/").content.decode()
    cancel = wallet.get(f"/wallet/withdrawals/{withdrawal.pk}/cancel/")

    assert f'on XRP Ledger, memo <code class="address">{TAG}</code>' in page
    assert f"with memo <code>{TAG}</code>" in cancel.content.decode()


def test_the_address_book_saves_a_memo_and_mails_it(
    wallet, alice, xrp, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        wallet.post(
            "/wallet/addresses/",
            {
                "book-label": "Kraken",
                "book-token": "XRP",
                "book-address": XRP_ADDRESS,
                "book-memo": TAG,
            },
        )

    assert SavedAddress.objects.get(user=alice).memo == TAG
    [mail] = mailoutbox
    assert f"with memo {TAG}, was saved" in mail.body
    page = wallet.get("/wallet/").content.decode()
    assert f"<code>{TAG}</code>" in page


# -- The API --------------------------------------------------------------------


def test_the_api_needs_the_memo_member_on_a_network_taking_one(api, alice, xrp):
    absent = _withdraw_api(api, token="XRP", address=XRP_ADDRESS)

    assert absent.status_code == 400
    assert absent.json()["error"]["code"] == "memo_required"
    assert absent.json()["error"]["message"].startswith(NEEDED)
    _nothing_locked(alice, xrp)

    none = _withdraw_api(api, token="XRP", address=XRP_ADDRESS, memo="")
    tagged = _withdraw_api(
        api, token="XRP", address=XRP_ADDRESS, memo=TAG, reference="r-2"
    )

    assert none.status_code == 201 and none.json()["memo"] == ""
    assert tagged.status_code == 201 and tagged.json()["memo"] == TAG
    listed = api.get("/api/v1/withdrawals/").json()["results"]
    assert sorted(row["memo"] for row in listed) == ["", TAG]


def test_the_api_refuses_a_memo_for_a_network_taking_none(api, alice, bitcoin):
    refused = _withdraw_api(api, token="BTC", address=BTC_ADDRESS, memo="1")
    plain = _withdraw_api(api, token="BTC", address=BTC_ADDRESS, reference="r-2")

    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_memo"
    assert plain.status_code == 201 and plain.json()["memo"] == ""


def test_the_api_refuses_a_wrong_memo_and_a_repeat_with_another(api, alice, xrp):
    wrong = _withdraw_api(api, token="XRP", address=XRP_ADDRESS, memo="12a")
    _withdraw_api(api, token="XRP", address=XRP_ADDRESS, memo=TAG)
    other = _withdraw_api(api, token="XRP", address=XRP_ADDRESS, memo="999")

    assert wrong.status_code == 400
    assert wrong.json()["error"]["code"] == "invalid_memo"
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "duplicate_reference"
    assert Withdrawal.objects.get(user=alice).memo == TAG


def test_the_api_mails_the_memo(
    api, alice, xrp, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        _withdraw_api(api, token="XRP", address=XRP_ADDRESS, memo=TAG)

    [mail] = mailoutbox
    assert f"to {XRP_ADDRESS} on XRP Ledger with memo {TAG} was requested" in (
        mail.body
    )


def test_the_api_saves_and_lists_addresses_with_their_memo(api, alice, xrp):
    saved = api.post(
        "/api/v1/addresses/",
        {"token": "XRP", "address": XRP_ADDRESS, "label": "Kraken", "memo": TAG},
        format="json",
    )
    plain = api.post(
        "/api/v1/addresses/",
        {"token": "XRP", "address": XRP_ADDRESS, "label": "Mine"},
        format="json",
    )

    assert saved.status_code == 201 and saved.json()["memo"] == TAG
    assert plain.status_code == 201 and plain.json()["memo"] == ""
    listed = api.get("/api/v1/addresses/").json()
    assert sorted(row["memo"] for row in listed) == ["", TAG]


# -- Staff ----------------------------------------------------------------------


def test_staff_see_the_memo_next_to_the_address(staff_client, alice, xrp):
    withdrawal = _withdraw(alice, xrp, memo=TAG)

    asked = staff_client.post(
        "/admin/trading/withdrawal/",
        {"action": "start_sending", "_selected_action": [withdrawal.pk]},
    )
    change = staff_client.get(f"/admin/trading/withdrawal/{withdrawal.pk}/change/")
    listed = staff_client.get("/admin/trading/withdrawal/")

    assert (
        f"<td><code>{XRP_ADDRESS}</code></td>\n  <td><code>{TAG}</code></td>"
        in asked.content.decode()
    )
    assert TAG in change.content.decode()
    assert f'<td class="field-memo_shown">{TAG}</td>' in listed.content.decode()


def test_staff_see_hidden_characters_of_an_older_memo_escaped(staff_client, alice, xrp):
    withdrawal = _withdraw(alice, xrp, memo=TAG)
    Withdrawal.objects.filter(pk=withdrawal.pk).update(memo="30\u202e52")

    listed = staff_client.get("/admin/trading/withdrawal/").content.decode()

    assert "30<mark" in listed and "\\u202e</mark>52" in listed


def test_staff_name_a_networks_memo_and_its_pattern_is_checked(staff_client, btc):
    url = "/admin/trading/addressformat/add/"
    form = {
        "token": str(btc.pk),
        "network": "XRP Ledger",
        "pattern": r"r[1-9A-HJ-NP-Za-km-z]{24,34}",
        "checksum": "base58check_xrp",
        "description": "r and letters",
        "example": "",
        "memo_name": "Destination tag",
    }

    nested = staff_client.post(url, {**form, "memo_pattern": "([0-9]+)+"})
    unnamed = staff_client.post(
        url, {**form, "memo_name": "", "memo_pattern": "[0-9]{1,10}"}
    )
    added = staff_client.post(url, {**form, "memo_pattern": "[0-9]{1,10}"})

    assert "repeats a part that itself repeats" in nested.content.decode()
    assert "A memo pattern needs a memo name" in unnamed.content.decode()
    assert added.status_code == 302
    address_format = AddressFormat.objects.get()
    assert (address_format.memo_name, address_format.memo_pattern) == (
        "Destination tag",
        "[0-9]{1,10}",
    )


def test_a_memo_name_saved_from_a_page_opened_before_an_edit_keeps_it(
    staff_clients, xrp
):
    address_format = AddressFormat.objects.get(token=xrp)
    url = f"/admin/trading/addressformat/{address_format.pk}/change/"
    first, second = staff_clients(2)
    opened_by_first = form_values(first.get(url))
    editing = form_values(second.get(url))
    editing["memo_pattern"] = "[0-9]{1,9}"
    assert second.post(url, editing).status_code == 302

    response = first.post(url, {**opened_by_first, "memo_name": "Tag"})

    assert response.status_code == 302
    address_format.refresh_from_db()
    assert (address_format.memo_name, address_format.memo_pattern) == (
        "Tag",
        "[0-9]{1,9}",
    )


def test_the_user_is_mailed_the_memo_when_the_withdrawal_ends(
    alice, xrp, mailoutbox, django_capture_on_commit_callbacks
):
    withdrawal = _withdraw(alice, xrp, memo=TAG)
    client = Client()
    client.force_login(alice)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/wallet/withdrawals/{withdrawal.pk}/cancel/")

    [sent] = mailoutbox
    assert f"on XRP Ledger with memo {TAG} (reference r-1) was cancelled" in (sent.body)


def test_the_memo_field_has_a_generic_label_when_networks_name_it_apart(
    wallet, xrp, atom
):
    page = wallet.get("/wallet/").content.decode()

    assert '<label for="id_memo">Memo / destination tag</label>' in page
    assert (
        "Only for networks that need one: Cosmos Hub (ATOM): memo; XRP Ledger "
        "(XRP): destination tag." in page
    )


# -- Review fixes ---------------------------------------------------------------


def test_a_memo_posted_after_the_last_memo_network_went_is_refused(
    wallet, alice, bitcoin
):
    # The page was opened while a network took a memo; staff removed it since.
    withdrawn = wallet.post(
        "/wallet/",
        {
            "token": "BTC",
            "amount": "10",
            "address": BTC_ADDRESS,
            "memo": TAG,
            "reference": "r",
        },
    )
    saved = wallet.post(
        "/wallet/addresses/",
        {
            "book-label": "Kraken",
            "book-token": "BTC",
            "book-address": BTC_ADDRESS,
            "book-memo": TAG,
        },
    )

    assert withdrawn.status_code == 400
    assert "takes no memo: leave the memo empty." in withdrawn.content.decode()
    _nothing_locked(alice, bitcoin)
    assert "takes no memo: leave the memo empty." in saved.content.decode()
    assert not SavedAddress.objects.filter(user=alice).exists()


def test_staff_see_the_spaces_of_a_memo_as_spaces(staff_client, alice, atom):
    withdrawal = _withdraw(alice, atom, ATOM_ADDRESS, memo="for alice")

    listed = staff_client.get("/admin/trading/withdrawal/").content.decode()
    asked = staff_client.post(
        "/admin/trading/withdrawal/",
        {"action": "start_sending", "_selected_action": [withdrawal.pk]},
    ).content.decode()

    assert '<td class="field-memo_shown">for alice</td>' in listed
    assert "<td><code>for alice</code></td>" in asked


@pytest.mark.parametrize("memo", ["   ", "\n", "\t", "\u00a0", "\u3000"])
def test_a_blank_looking_memo_is_not_taken_for_none(api, alice, xrp, memo):
    with pytest.raises(InvalidMemo) as refusal:
        _withdraw(alice, xrp, memo=memo)
    refused = _withdraw_api(api, token="XRP", address=XRP_ADDRESS, memo=memo)
    saved = api.post(
        "/api/v1/addresses/",
        {"token": "XRP", "address": XRP_ADDRESS, "label": "Kraken", "memo": memo},
        format="json",
    )

    assert refusal.value.message.startswith("The memo is blank")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_memo"
    assert refused.json()["error"]["message"].startswith("The memo is blank")
    assert saved.status_code == 400
    _nothing_locked(alice, xrp)
    assert not SavedAddress.objects.filter(user=alice).exists()


def test_a_real_memo_loses_its_surrounding_spaces(api, alice, xrp):
    made = _withdraw_api(api, token="XRP", address=XRP_ADDRESS, memo=f" {TAG}\n")

    assert made.status_code == 201 and made.json()["memo"] == TAG


def test_a_wrong_memo_is_told_how_the_memo_looks(alice, xrp):
    AddressFormat.objects.filter(token=xrp).update(
        memo_description="a number of 1 to 10 digits"
    )

    with pytest.raises(InvalidMemo) as refusal:
        _withdraw(alice, xrp, memo="12a")

    assert refusal.value.message == (
        "A destination tag for XRP Ledger is a number of 1 to 10 digits; this "
        "one is not. Copy it again from the recipient's deposit instructions."
    )


def test_the_api_says_a_memo_sent_as_a_number_must_be_a_string(api, alice, xrp):
    withdrawn = _withdraw_api(api, token="XRP", address=XRP_ADDRESS, memo=123)
    saved = api.post(
        "/api/v1/addresses/",
        {"token": "XRP", "address": XRP_ADDRESS, "label": "Kraken", "memo": 123},
        format="json",
    )

    for refused in (withdrawn, saved):
        assert refused.status_code == 400
        assert 'A memo is a JSON string, like "memo": "123".' in str(refused.json())
    _nothing_locked(alice, xrp)


def test_the_cancel_page_of_an_ended_withdrawal_shows_network_and_memo(
    wallet, alice, xrp
):
    withdrawal = _withdraw(alice, xrp, memo=TAG)
    wallet.post(f"/wallet/withdrawals/{withdrawal.pk}/cancel/")

    page = wallet.get(f"/wallet/withdrawals/{withdrawal.pk}/cancel/")

    assert "This withdrawal is cancelled" in page.content.decode()
    assert (
        f"to <code>{XRP_ADDRESS}</code> on XRP Ledger with memo <code>{TAG}</code>."
        in page.content.decode()
    )
