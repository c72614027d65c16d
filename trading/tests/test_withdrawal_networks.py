"""The network a withdrawal's coins go out on: recorded from the address when
it fits one of the token's networks, chosen when it fits several (an 0x
address on two EVM chains), and shown to the user and to staff."""

from __future__ import annotations

import hashlib
from decimal import Decimal as D

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.factories import PASSWORD, balance, demo_address_formats, fund, token_make
from trading.exceptions import DuplicateReference, InvalidAddress
from trading.models import LedgerEntry, Withdrawal
from trading.services import address_format_ensure, withdrawal_request

pytestmark = pytest.mark.django_db

EVM = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
ERC20 = "Ethereum, ERC-20"
BEP20 = "BNB Smart Chain, BEP-20"
TRC20 = "Tron, TRC-20"
AMBIGUOUS = f"This address is valid on {ERC20} and {BEP20}: choose the network."


def _base58check(payload: bytes) -> str:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    data = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    number, text = int.from_bytes(data, "big"), ""
    while number:
        number, digit = divmod(number, 58)
        text = alphabet[digit] + text
    return text


TRON = _base58check(b"\x41" + bytes(range(1, 21)))


@pytest.fixture
def usdt(alice):
    """USDT on Ethereum (seed_demo's), BNB Smart Chain and Tron; alice has 100."""
    token = demo_address_formats(token_make("USDT", decimals=6))
    address_format_ensure(
        token=token,
        network=BEP20,
        pattern=r"0x[0-9a-fA-F]{40}",
        checksum="eip55",
        description="0x followed by 40 hex digits",
    )
    address_format_ensure(
        token=token,
        network=TRC20,
        pattern=r"T[1-9A-HJ-NP-Za-km-z]{33}",
        checksum="base58check",
        description="T followed by 33 letters and digits",
    )
    fund(alice, token, "100")
    return token


@pytest.fixture
def eth(alice):
    token = demo_address_formats(token_make("ETH", decimals=18))
    fund(alice, token, "100")
    return token


@pytest.fixture
def wallet(client, alice, reauthenticate):
    client.force_login(alice)
    reauthenticate(client, PASSWORD)
    return client


@pytest.fixture
def api(alice, reauthenticate):
    client = APIClient()
    client.force_login(alice)
    reauthenticate(client, PASSWORD)
    return client


def _withdraw(user, token, address: str, *, network: str = "", reference="r-1"):
    return withdrawal_request(
        user=user,
        token=token,
        amount=D(1),
        address=address,
        reference=reference,
        network=network,
    )


def _withdraw_api(api, **fields):
    body = {"amount": "10", "reference": "r-1", **fields}
    return api.post("/api/v1/withdrawals/", body, format="json")


def _nothing_locked(user, token) -> None:
    assert not Withdrawal.objects.filter(user=user).exists()
    assert not LedgerEntry.objects.filter(transaction__withdrawal__isnull=False)
    assert balance(user, token) == (D(100), D(0))


# -- The service ----------------------------------------------------------------


def test_an_address_of_one_network_records_it_without_asking(alice, usdt, eth):
    on_tron = _withdraw(alice, usdt, TRON)
    on_ethereum = _withdraw(alice, eth, EVM.lower(), reference="r-2")

    assert on_tron.network == TRC20
    assert (on_ethereum.network, on_ethereum.address) == ("Ethereum", EVM)


def test_an_address_of_several_networks_needs_one_chosen(alice, usdt):
    with pytest.raises(InvalidAddress) as refusal:
        _withdraw(alice, usdt, EVM)

    assert refusal.value.message == AMBIGUOUS
    _nothing_locked(alice, usdt)

    chosen = _withdraw(alice, usdt, EVM.lower(), network=BEP20)

    assert (chosen.network, chosen.address) == (BEP20, EVM)


@pytest.mark.parametrize(
    ("address", "network", "message"),
    [
        (
            TRON,
            ERC20,
            f"This address is not valid for USDT on {ERC20}: it should be 0x "
            f"followed by 40 hex digits. It is one on {TRC20}",
        ),
        (
            EVM,
            TRC20,
            f"This address is not valid for USDT on {TRC20}: it should be T "
            f"followed by 33 letters and digits. It is one on {ERC20} or {BEP20}",
        ),
        (
            EVM,
            "Solana",
            f"USDT is not sent on “Solana”: choose {ERC20} or {BEP20} or {TRC20}.",
        ),
    ],
)
def test_a_network_the_address_does_not_fit_is_refused(
    alice, usdt, address, network, message
):
    with pytest.raises(InvalidAddress) as refusal:
        _withdraw(alice, usdt, address, network=network)

    assert refusal.value.message.startswith(message)
    _nothing_locked(alice, usdt)


def test_a_token_without_formats_records_no_network_and_refuses_one(alice):
    token = token_make("XYZ")
    fund(alice, token, "100")

    with pytest.raises(InvalidAddress, match="No networks are set up for XYZ"):
        _withdraw(alice, token, "anything", network=ERC20)
    withdrawal = _withdraw(alice, token, "anything")

    assert withdrawal.network == ""


def test_a_repeat_on_another_network_is_a_different_request(alice, usdt):
    first = _withdraw(alice, usdt, EVM, network=ERC20)

    with pytest.raises(DuplicateReference):
        _withdraw(alice, usdt, EVM, network=BEP20)
    repeat = _withdraw(alice, usdt, EVM, network=ERC20)

    assert repeat == first
    assert balance(alice, usdt) == (D(99), D(1))


def test_a_repeat_of_a_request_made_before_networks_were_recorded_is_the_same(
    alice, usdt
):
    first = _withdraw(alice, usdt, EVM, network=ERC20)
    # Requested before this version, which records no network.
    Withdrawal.objects.filter(pk=first.pk).update(network="")

    repeat = _withdraw(alice, usdt, EVM, network=ERC20)

    assert repeat.pk == first.pk
    assert balance(alice, usdt) == (D(99), D(1))


# -- The wallet -----------------------------------------------------------------


def test_the_wallet_asks_for_the_network_of_an_ambiguous_address(wallet, alice, usdt):
    form = {"token": "USDT", "amount": "10", "address": EVM, "reference": "r-1"}

    refused = wallet.post("/wallet/", form)

    assert refused.status_code == 400
    assert refused.context["form"].errors["address"] == [AMBIGUOUS]
    page = refused.content.decode()
    assert f'<option value="{BEP20}">{BEP20}</option>' in page
    _nothing_locked(alice, usdt)

    done = wallet.post("/wallet/", {**form, "network": BEP20}, follow=True)

    assert Withdrawal.objects.get(user=alice).network == BEP20
    assert f"on {BEP20}" in done.content.decode()


def test_the_wallet_records_the_only_network_of_an_address(wallet, alice, usdt):
    wallet.post(
        "/wallet/",
        {"token": "USDT", "amount": "10", "address": TRON, "reference": "r-1"},
    )

    assert Withdrawal.objects.get(user=alice).network == TRC20


def test_the_wallet_has_no_network_field_when_every_token_has_one(wallet, eth):
    page = wallet.get("/wallet/").content.decode()

    assert 'name="network"' not in page


# -- The API --------------------------------------------------------------------


def test_the_api_refuses_an_ambiguous_address_without_a_network(api, alice, usdt):
    response = _withdraw_api(api, token="USDT", address=EVM)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_address"
    assert response.json()["error"]["message"] == AMBIGUOUS
    _nothing_locked(alice, usdt)


def test_the_api_records_and_shows_the_network(
    api, alice, usdt, django_capture_on_commit_callbacks, mailoutbox
):
    with django_capture_on_commit_callbacks(execute=True):
        chosen = _withdraw_api(api, token="USDT", address=EVM, network=BEP20)
    automatic = _withdraw_api(api, token="USDT", address=TRON, reference="r-2")

    assert chosen.status_code == 201 and chosen.json()["network"] == BEP20
    assert automatic.status_code == 201 and automatic.json()["network"] == TRC20
    listed = api.get("/api/v1/withdrawals/").json()["results"]
    assert {row["network"] for row in listed} == {BEP20, TRC20}
    [mail] = mailoutbox
    assert f"to {EVM} on {BEP20} was requested" in mail.body


def test_the_api_refuses_a_repeat_on_another_network_as_a_conflict(api, alice, usdt):
    _withdraw_api(api, token="USDT", address=EVM, network=ERC20)

    response = _withdraw_api(api, token="USDT", address=EVM, network=BEP20)

    assert response.status_code == 409
    assert Withdrawal.objects.get(user=alice).network == ERC20


# -- Staff ----------------------------------------------------------------------


def test_staff_see_the_network_before_they_start_sending(staff_client, alice, usdt):
    withdrawal = _withdraw(alice, usdt, EVM, network=BEP20)

    asked = staff_client.post(
        "/admin/trading/withdrawal/",
        {"action": "start_sending", "_selected_action": [withdrawal.pk]},
    )
    change = staff_client.get(f"/admin/trading/withdrawal/{withdrawal.pk}/change/")
    listed = staff_client.get("/admin/trading/withdrawal/")

    assert asked.templates[0].name == (
        "admin/trading/withdrawal/start_sending_confirmation.html"
    )
    assert f"<td>{BEP20}</td>" in asked.content.decode()
    assert BEP20 in change.content.decode()
    assert BEP20 in listed.content.decode()


def test_the_user_sees_the_network_in_the_cancel_page(alice, usdt):
    withdrawal = _withdraw(alice, usdt, TRON)
    client = Client()
    client.force_login(alice)

    page = client.get(f"/wallet/withdrawals/{withdrawal.pk}/cancel/")

    assert f"on {TRC20}" in page.content.decode()
