"""Address checksums against their specifications' published test vectors,
the validation of admin patterns, and the messages wrong addresses get."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError

from tests.factories import typo
from trading.addresses import (
    BECH32_CHARSET,
    ChecksumMismatch,
    address_canonical,
    address_pattern_validate,
    base58check_check,
    base58check_xrp_check,
    bech32_check,
    eip55_check,
    eip55_checksummed,
    keccak256,
    segwit_check,
    ss58_check,
)
from trading.exceptions import InvalidAddress
from trading.models import AddressFormat

# -- EIP-55 (https://eips.ethereum.org/EIPS/eip-55, "Test Cases") -------------

EIP55_CHECKSUMMED = [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]
EIP55_ALL_CAPS = [
    "0x52908400098527886E0F7030069857D2E4169EE7",
    "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
]
EIP55_ALL_LOWER = [
    "0xde709f2102306220921060314715629080e2fb77",
    "0x27b1fdb04752bbc536007a920d24acb045561c26",
]


def test_keccak256_is_ethereums_not_sha3():
    assert keccak256(b"").hex() == (
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )


@pytest.mark.parametrize("address", EIP55_CHECKSUMMED)
def test_eip55_checksummed_vectors_pass_and_are_reproduced(address):
    eip55_check(address)
    assert eip55_checksummed(address.lower()) == address


@pytest.mark.parametrize("address", EIP55_ALL_CAPS + EIP55_ALL_LOWER)
def test_eip55_single_case_addresses_carry_no_checksum_and_pass(address):
    eip55_check(address)


@pytest.mark.parametrize("address", EIP55_CHECKSUMMED)
def test_eip55_one_letter_in_the_wrong_case_is_refused(address):
    index = next(i for i, c in enumerate(address) if i > 1 and c.isalpha())
    flipped = address[:index] + address[index].swapcase() + address[index + 1 :]

    with pytest.raises(ChecksumMismatch, match="EIP-55 checksum"):
        eip55_check(flipped)


# -- Bech32 / Bech32m (BIP-350 "Test vectors", which include BIP-173's) --------

SEGWIT_VALID = [
    "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",
    "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
    "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
    "BC1SW50QGDZ25J",
    "bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs",
    "tb1qqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesrxh6hy",
    "tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c",
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
]
SEGWIT_INVALID = [
    # Bech32 instead of Bech32m, and the reverse
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd", "checksum"),
    ("tb1z0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqglt7rf", "checksum"),
    ("BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL", "checksum"),
    ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh", "checksum"),
    ("tb1q0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq24jc47", "checksum"),
    ("bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4", "'o'"),
    ("BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R", "version"),
    ("bc1pw5dgrnzv", "length"),
    (
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav",
        "length",
    ),
    ("BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P", "20 or 32 bytes"),
    ("tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq47Zagq", "case"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf", "length"),
    ("tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vpggkg4j", "length"),
    ("bc1gmk9yu", "witness version"),
]


@pytest.mark.parametrize("address", SEGWIT_VALID)
def test_segwit_vectors_pass(address):
    segwit_check(address)


@pytest.mark.parametrize(("address", "reason"), SEGWIT_INVALID)
def test_segwit_invalid_vectors_are_refused_with_their_reason(address, reason):
    with pytest.raises(ChecksumMismatch, match=reason):
        segwit_check(address)


@pytest.mark.parametrize("address", SEGWIT_VALID)
@pytest.mark.reliability("hostile-addresses")
def test_segwit_every_one_character_typo_is_caught(address):
    lower = address.lower()
    for index in range(lower.index("1") + 1, len(lower)):
        with pytest.raises(ChecksumMismatch):
            segwit_check(typo(lower, index, BECH32_CHARSET))


CARDANO = [  # CIP-19 test vectors (mainnet, type 0 base and type 6 enterprise)
    "addr1qx2fxv2umyhttkxyxp8x0dlpdt3k6cwng5pxj3jhsydzer3n0d3vllmyqwsx5wktcd8cc3sq"
    "835lu7drv2xwl2wywfgse35a3x",
    "addr1vx2fxv2umyhttkxyxp8x0dlpdt3k6cwng5pxj3jhsydzers66hrl8",
]


@pytest.mark.parametrize("address", CARDANO)
def test_cardano_bech32_passes_beyond_90_characters_and_typos_do_not(address):
    bech32_check(address)
    with pytest.raises(ChecksumMismatch, match="checksum"):
        bech32_check(typo(address, 20, BECH32_CHARSET))


def test_bech32_alone_refuses_a_bech32m_string():
    with pytest.raises(ChecksumMismatch):
        bech32_check("a1lqfn3a")  # valid Bech32m (BIP-350)


# -- Base58Check and SS58 -----------------------------------------------------

BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
BITCOIN_LEGACY = [
    "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",  # the genesis block's
    "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",  # P2SH, Bitcoin wiki example
    "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",
]


@pytest.mark.parametrize("address", BITCOIN_LEGACY)
@pytest.mark.reliability("hostile-addresses")
def test_base58check_passes_and_catches_every_one_charactertypo(address):
    base58check_check(address)
    for index in range(1, len(address)):
        with pytest.raises(ChecksumMismatch):
            base58check_check(typo(address, index, BASE58))


def test_base58check_names_look_alike_characters():
    with pytest.raises(ChecksumMismatch, match="'0'"):
        base58check_check("1A1zP1eP5QGefi2DMPTfTL5SLmv7Divf0a")


@pytest.mark.parametrize(
    "address",
    [
        "rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh",  # the XRP Ledger's genesis account
        "rrrrrrrrrrrrrrrrrrrrrhoLvTp",  # ACCOUNT_ZERO
        "rrrrrrrrrrrrrrrrrrrrBZbvji",  # ACCOUNT_ONE
    ],
)
def test_xrp_addresses_use_their_own_alphabet(address):
    base58check_xrp_check(address)
    with pytest.raises(ChecksumMismatch):
        base58check_check(address)
    with pytest.raises(ChecksumMismatch):
        base58check_xrp_check(address[:-1] + ("a" if address[-1] != "a" else "b"))


def test_ss58_polkadot_address_of_alice_passes_and_a_typo_does_not():
    alice = "15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5"
    ss58_check(alice)
    with pytest.raises(ChecksumMismatch, match="checksum"):
        ss58_check(typo(alice, 10, BASE58))


# -- Patterns (the admin's validator) -----------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [r"0x[0-9a-fA-F]{40}", r"(?i)bc1[02-9ac-hj-np-z]{8,87}", r"[13][1-9A-Z]{25,34}"],
)
def test_ordinary_patterns_are_accepted(pattern):
    address_pattern_validate(pattern)


def test_an_invalid_regular_expression_is_refused_saying_why():
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        address_pattern_validate("0x[0-9a-f{40}")


@pytest.mark.parametrize("pattern", [r"(a+)+b", r"([a-z]*)*", r"(?:\w+\s?)+$"])
@pytest.mark.reliability("hostile-addresses")
def test_nested_unbounded_repetition_is_refused(pattern):
    with pytest.raises(ValidationError, match="exponential"):
        address_pattern_validate(pattern)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("a{99999999999}", "not a valid regular expression"),
        (r"(?=bc1)[a-z0-9]{42}", "RE2"),
        (r"([0-9a-f])\1{39}", "RE2"),
        ("[a-z]{1001}", "RE2"),
        ("(?:[a-z]{0,1000})" * 29, "too large"),
        ("(?:[a-z]?){1000}" * 31, "too large"),
    ],
)
@pytest.mark.reliability("hostile-addresses")
def test_a_pattern_the_matching_engine_cannot_run_quickly_is_refused_saying_why(
    pattern, message
):
    with pytest.raises(ValidationError, match=message):
        address_pattern_validate(pattern)


# Patterns that backtracking engines take exponential or high-polynomial time
# on, whether or not the admin accepts them, and addresses they choke on.
HOSTILE_PATTERNS = {
    r"D(?:[a-z0-9]|[a-z0-9]{2})+": "D" + "a" * 253 + "!",
    r"(a|a)*": "a" * 254 + "!",
    r"(a|aa)*": "a" * 254 + "!",
    r"(?:a|ab|b)*c": "ab" * 127,
    r"[a-z]*[a-z]*[a-z]*[a-z]*[a-z]*0": "a" * 255,
    r"(a+)+b": "a" * 254 + "!",
    r"(?:\w+\s?)+$": "a" * 254 + "!",
}

_MATCH_HOSTILE = """
import django
django.setup()
from tokens.models import Token
from trading.addresses import address_canonical
from trading.exceptions import InvalidAddress
from trading.models import AddressFormat
token = Token(symbol="DOGE")
for pattern, address in {patterns!r}.items():
    address_format = AddressFormat(
        token=token, network="Hostile", pattern=pattern, description="hostile"
    )
    try:
        address_canonical(token=token, address=address, formats=[address_format])
    except InvalidAddress:
        print("refused", pattern)
"""


@pytest.mark.reliability("hostile-addresses")
def test_no_pattern_makes_matching_an_address_take_long():
    # In a process of its own: a backtracking match cannot be interrupted.
    script = _MATCH_HOSTILE.format(patterns=HOSTILE_PATTERNS)
    environment = {**os.environ, "ENV_FILE": "/dev/null"}
    try:
        finished = subprocess.run(
            [sys.executable, "-c", script],
            cwd=settings.BASE_DIR,
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("matching an address of 255 characters ran for a minute")

    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.splitlines() == [
        f"refused {pattern}" for pattern in HOSTILE_PATTERNS
    ]


@pytest.mark.django_db
def test_a_stored_pattern_the_engine_cannot_run_refuses_addresses_without_a_crash(btc):
    # Saved before patterns had to suit RE2, bypassing the validator.
    AddressFormat.objects.create(
        token=btc,
        network="Old",
        pattern=r"(?=1)[1-9A-HJ-NP-Za-km-z]{26,35}",
        description="1 followed by letters and digits",
    )

    with pytest.raises(InvalidAddress, match="it should be 1 followed by"):
        address_canonical(token=btc, address="1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2")


@pytest.mark.django_db
def test_an_address_that_is_not_valid_text_is_refused_without_a_crash(btc, btc_formats):
    with pytest.raises(InvalidAddress, match=r"U\+D800\) that is not a character"):
        address_canonical(token=btc, address="bc1q\ud800", formats=btc_formats)


# -- Messages -----------------------------------------------------------------


@pytest.fixture
def btc_formats(btc):
    return [
        AddressFormat(
            token=btc,
            network="Bitcoin, SegWit",
            pattern=r"(?i)bc1[02-9ac-hj-np-z]{8,87}",
            checksum="segwit",
            description="bc1 followed by letters and digits",
        ),
        AddressFormat(
            token=btc,
            network="Bitcoin, legacy",
            pattern=r"[13][1-9A-HJ-NP-Za-km-z]{25,34}",
            checksum="base58check",
            description="1 or 3 followed by 25 to 34 letters and digits",
        ),
    ]


@pytest.mark.django_db
@pytest.mark.reliability("hostile-addresses")
def test_an_address_of_another_network_gets_what_it_should_look_like(btc, btc_formats):
    with pytest.raises(InvalidAddress) as refusal:
        address_canonical(token=btc, address=EIP55_CHECKSUMMED[0], formats=btc_formats)

    assert refusal.value.message == (
        "This is not a valid address for BTC: it should be bc1 followed by "
        "letters and digits (Bitcoin, SegWit); or 1 or 3 followed by 25 to 34 "
        "letters and digits (Bitcoin, legacy)."
    )


@pytest.mark.django_db
def test_a_typo_gets_the_checksum_message(btc, btc_formats):
    with pytest.raises(
        InvalidAddress, match=r"not a valid address for BTC: its checksum"
    ):
        address_canonical(
            token=btc, address=BITCOIN_LEGACY[0][:-1] + "b", formats=btc_formats
        )


@pytest.mark.django_db
def test_bech32_is_stored_in_lower_case(btc, btc_formats):
    assert (
        address_canonical(
            token=btc, address=f" {SEGWIT_VALID[0]} ", formats=btc_formats
        )
        == SEGWIT_VALID[0].lower()
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("", "Enter the destination address."),
        ("1" * 256, "at most 255 characters"),
        ("1A1zP1eP5QGefi2D MPTfTL5SLmv7DivfNa", "contains a space at position 17"),
    ],
)
@pytest.mark.reliability("hostile-addresses")
def test_empty_long_and_broken_addresses_say_so(btc, btc_formats, address, message):
    with pytest.raises(InvalidAddress, match=message):
        address_canonical(token=btc, address=address, formats=btc_formats)


@pytest.mark.django_db
def test_a_token_without_formats_accepts_any_address_in_printable_ascii(btc):
    assert address_canonical(token=btc, address="any-thing:at_all?dt=7") == (
        "any-thing:at_all?dt=7"
    )
