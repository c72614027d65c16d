"""Destination addresses: the checksums of the networks the exchange sends to.

A token's ``AddressFormat`` rows say what its addresses look like: a regular
expression that must match the whole address, and optionally one of the
checksums below. ``address_canonical`` accepts an address that fits one of
them and returns it in its canonical spelling (Bech32 in lower case, EIP-55
addresses with their checksum case), or raises ``InvalidAddress`` saying what
is wrong. A token without formats accepts any address in printable ASCII.
Whatever the formats, an address with a space, a line break or an invisible
character (a zero-width space, a text-direction control) is refused: it would
display as another address.

The checksums, each after its specification:

``segwit``
    BIP-173 / BIP-350: a Bech32 string whose data is a witness version and
    program; version 0 uses the Bech32 constant, versions 1 to 16 Bech32m.
``bech32``
    The Bech32 checksum alone, without the 90-character limit (Cardano's
    Shelley addresses, CIP-19).
``base58check``
    Base58 with a double-SHA-256 checksum over a version byte and a 20-byte
    hash (Bitcoin's P2PKH and P2SH, Litecoin, Dogecoin).
``base58check_xrp``
    The same with the XRP Ledger's alphabet (classic ``r`` addresses).
``ss58``
    Substrate's SS58 (Polkadot): a one-byte network prefix, a 32-byte account
    and two bytes of BLAKE2b-512 over ``"SS58PRE"`` and both.
``eip55``
    Ethereum's mixed-case checksum (EIP-55, Keccak-256). An address in all
    lower or all upper case carries no checksum and is accepted as it is.

Patterns are written in Python's syntax but matched by RE2, which takes time
linear in the address whatever the pattern (Python's ``re`` backtracks, and
patterns like ``(a|a)*`` take it exponential time); ``address_pattern_validate``
accepts only patterns both understand and small enough to match quickly.

Memos
-----
Some networks (the XRP Ledger, Stellar, Cosmos chains, EOS, TON) identify
the recipient at an exchange or custodian by a memo sent with the
transaction (a "destination tag" on the XRP Ledger), the address being
shared by all its customers. A format with a ``memo_name`` takes one,
matching its ``memo_pattern`` when set (``[0-9]{1,10}`` for XRP Ledger tags:
whether a tag is within 32 bits is the recipient's concern);
``memo_canonical`` refuses one a network does not take or that is not
written as the network writes them.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING

import re2
from Crypto.Hash import keccak
from django.core.exceptions import ValidationError

from trading.exceptions import InvalidAddress, InvalidMemo

if TYPE_CHECKING:
    from tokens.models import Token
    from trading.models import AddressFormat

logger = logging.getLogger(__name__)

ADDRESS_MAX_LENGTH = 255
MEMO_MAX_LENGTH = 256  # Cosmos's limit, the largest of the common networks
PATTERN_MAX_LENGTH = 500

# RE2's memory budget per pattern also caps the size of its compiled program:
# a pattern too large for it fails to compile (in milliseconds) instead of
# making each match walk tens of thousands of states. 256 KiB holds the
# largest real format (Cardano's, about 2,400 instructions) several times over.
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.max_mem = 256 * 1024
_RE2_OPTIONS.log_errors = False  # refusals are reported, not written to stderr


class ChecksumMismatch(ValueError):
    """The address fits the pattern but not the checksum; the text says why."""


# -- Bech32 and Bech32m (BIP-173, BIP-350) ----------------------------------

BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_CONST = 1
_BECH32M_CONST = 0x2BC830A3


def _bech32_polymod(values: Iterable[int]) -> int:
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for index in range(5):
            checksum ^= generator[index] if (top >> index) & 1 else 0
    return checksum


def _bech32_hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def bech32_decode(
    address: str, *, max_length: int | None = 90
) -> tuple[str, list[int], int]:
    """Split a Bech32 or Bech32m string into its human-readable part, its data
    (5-bit values, checksum removed) and the checksum constant it verifies
    with; raises ``ChecksumMismatch`` saying what is wrong."""
    if address.lower() != address and address.upper() != address:
        raise ChecksumMismatch("it mixes upper- and lower-case letters")
    if max_length is not None and len(address) > max_length:
        raise ChecksumMismatch(f"it is longer than {max_length} characters")
    address = address.lower()
    hrp, separator, data_part = address.rpartition("1")
    if not separator or not hrp or len(data_part) < 6:
        raise ChecksumMismatch("it has no Bech32 separator and checksum")
    if any(not 33 <= ord(c) <= 126 for c in hrp):
        raise ChecksumMismatch("its prefix has characters Bech32 does not allow")
    wrong = sorted({c for c in data_part if c not in BECH32_CHARSET})
    if wrong:
        raise ChecksumMismatch(
            f"it contains {', '.join(repr(c) for c in wrong)}, which Bech32 "
            "addresses never use (b, i, o and 1 after the prefix)"
        )
    data = [BECH32_CHARSET.index(c) for c in data_part]
    constant = _bech32_polymod(_bech32_hrp_expand(hrp) + data)
    if constant not in (_BECH32_CONST, _BECH32M_CONST):
        raise ChecksumMismatch("its checksum does not match (a typo?)")
    return hrp, data[:-6], constant


def _convert_bits(data: list[int], from_bits: int, to_bits: int) -> list[int] | None:
    """Regroup bits without padding (as BIP-173 decoding requires)."""
    accumulator, bits, result = 0, 0, []
    for value in data:
        accumulator = accumulator << from_bits | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            result.append(accumulator >> bits & (1 << to_bits) - 1)
    if bits >= from_bits or accumulator << (to_bits - bits) & (1 << to_bits) - 1:
        return None
    return result


def segwit_check(address: str) -> None:
    """A segregated-witness address (BIP-173 for version 0, BIP-350 after)."""
    _, data, constant = bech32_decode(address)
    if not data:
        raise ChecksumMismatch("it has no witness version")
    version, program = data[0], _convert_bits(data[1:], 5, 8)
    if version > 16:
        raise ChecksumMismatch(f"its witness version {version} does not exist")
    if program is None or not 2 <= len(program) <= 40:
        raise ChecksumMismatch("its witness program has an invalid length")
    if version == 0 and len(program) not in (20, 32):
        raise ChecksumMismatch("a version 0 witness program is 20 or 32 bytes")
    expected = _BECH32_CONST if version == 0 else _BECH32M_CONST
    if constant != expected:
        # A v0 address with a Bech32m checksum or the reverse: a BIP-350 rule
        # that catches the insertion/deletion weakness of plain Bech32.
        raise ChecksumMismatch("its checksum does not match (a typo?)")


def bech32_check(address: str) -> None:
    """The Bech32 checksum alone, any length (Cardano)."""
    _, _, constant = bech32_decode(address, max_length=None)
    if constant != _BECH32_CONST:
        raise ChecksumMismatch("its checksum does not match (a typo?)")


# -- Base58Check and SS58 ---------------------------------------------------

BITCOIN_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
XRP_ALPHABET = "rpshnaf39wBUDNEGHJKLM4PQRST7VWXYZ2bcdeCg65jkm8oFqi1tuvAxyz"


def base58_decode(text: str, *, alphabet: str = BITCOIN_ALPHABET) -> bytes:
    wrong = sorted({c for c in text if c not in alphabet})
    if wrong:
        raise ChecksumMismatch(
            f"it contains {', '.join(repr(c) for c in wrong)}, which base58 "
            "addresses never use (0, O, I and l are left out as look-alikes)"
        )
    number = 0
    for char in text:
        number = number * 58 + alphabet.index(char)
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    leading_zeros = len(text) - len(text.lstrip(alphabet[0]))
    return b"\0" * leading_zeros + body


def _double_sha256(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def _base58check(address: str, *, alphabet: str) -> None:
    raw = base58_decode(address, alphabet=alphabet)
    if len(raw) != 25:
        raise ChecksumMismatch("it is too short or too long")
    if _double_sha256(raw[:-4])[:4] != raw[-4:]:
        raise ChecksumMismatch("its checksum does not match (a typo?)")


def base58check_check(address: str) -> None:
    _base58check(address, alphabet=BITCOIN_ALPHABET)


def base58check_xrp_check(address: str) -> None:
    _base58check(address, alphabet=XRP_ALPHABET)


def ss58_check(address: str) -> None:
    """An SS58 address of a 32-byte account with a one-byte network prefix."""
    raw = base58_decode(address)
    if len(raw) != 35:
        raise ChecksumMismatch("it is too short or too long")
    digest = hashlib.blake2b(b"SS58PRE" + raw[:-2], digest_size=64).digest()
    if digest[:2] != raw[-2:]:
        raise ChecksumMismatch("its checksum does not match (a typo?)")


# -- EIP-55 -----------------------------------------------------------------


def keccak256(data: bytes) -> bytes:
    """Keccak-256 as Ethereum uses it (not the standardised SHA3-256)."""
    return keccak.new(data=data, digest_bits=256).digest()


def eip55_checksummed(address: str) -> str:
    """``0x`` and 40 hex digits, each letter upper case where the Keccak-256
    of the lower-case hex has a nibble of 8 or more."""
    digits = address[2:].lower()
    digest = keccak256(digits.encode("ascii")).hex()
    return "0x" + "".join(
        char.upper() if int(digest[index], 16) >= 8 else char
        for index, char in enumerate(digits)
    )


def eip55_check(address: str) -> None:
    if not re.fullmatch(r"0[xX][0-9a-fA-F]{40}", address):
        raise ChecksumMismatch("it is not 0x followed by 40 hex digits")
    digits = address[2:]
    if digits.lower() == digits or digits.upper() == digits:
        return
    if eip55_checksummed(address) != "0x" + digits:
        raise ChecksumMismatch(
            "its mix of upper- and lower-case letters does not match its EIP-55 "
            "checksum (a typo?)"
        )


# -- Characters -------------------------------------------------------------

# Unicode's text-direction controls: one of them makes the text after it
# display reversed or moved, so an address or a label reads as another.
_DIRECTION_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def _invisible_described(char: str) -> str | None:
    """What ``char`` is if it does not show as itself (a space, a line break,
    an invisible or control character), else None."""
    code = f"U+{ord(char):04X}"
    category = unicodedata.category(char)
    if char == " ":
        return "a space"
    if char == "\t":
        return f"a tab ({code})"
    if char in _LINE_BREAKS or category in ("Zl", "Zp"):
        return f"a line break ({code})"
    if category == "Zs":
        return f"a special space ({code})"
    if char in _DIRECTION_CONTROLS:
        return f"an invisible text-direction character ({code})"
    if category in ("Cc", "Cf"):
        return f"an invisible character ({code})"
    if category == "Cs":
        return f"a code ({code}) that is not a character"
    return None


def text_character_problem(text: str, *, spaces_allowed: bool) -> str | None:
    """None if every character of ``text`` shows as itself, else the first
    that does not and where, like "an invisible character (U+200B) at
    position 35". Spaces (Unicode's space separators) pass if allowed; line
    breaks, control and format characters (Cc, Cf, Zl, Zp) never do."""
    for position, char in enumerate(text, start=1):
        if spaces_allowed and unicodedata.category(char) == "Zs":
            continue
        if (described := _invisible_described(char)) is not None:
            return f"{described} at position {position}"
    return None


def _non_ascii_problem(address: str) -> str | None:
    """The first character of ``address`` outside ASCII and where, else None:
    the addresses of all common networks are plain ASCII, and a look-alike
    letter of another alphabet makes a different address that reads the same."""
    for position, char in enumerate(address, start=1):
        if char.isascii():
            continue
        code = f"U+{ord(char):04X}"
        if not char.isalpha():
            kind = "a character"
        elif unicodedata.name(char, "").startswith("LATIN"):
            kind = "an accented letter"
        else:
            kind = "a non-Latin letter"
        return f"{kind} '{char}' ({code}) at position {position}"
    return None


# -- Formats ----------------------------------------------------------------

CHECKS = {
    "segwit": segwit_check,
    "bech32": bech32_check,
    "base58check": base58check_check,
    "base58check_xrp": base58check_xrp_check,
    "ss58": ss58_check,
    "eip55": eip55_check,
}


def _canonical(address: str, checksum: str) -> str:
    if checksum in ("segwit", "bech32"):
        return address.lower()
    if checksum == "eip55":
        return eip55_checksummed(address)
    return address


def _pattern_nests_repeats(tree: object, inside_repeat: bool = False) -> bool:
    """Whether a parsed pattern repeats something that itself repeats without
    bound, like ``(a+)+``: such patterns can take exponential time."""
    from re import _constants, _parser  # what re.compile uses

    repeats = (_constants.MAX_REPEAT, _constants.MIN_REPEAT)
    for op, argument in tree:
        if op in repeats:
            _, high, sub = argument
            unbounded = high == _constants.MAXREPEAT or high > 1000
            if inside_repeat and unbounded:
                return True
            if _pattern_nests_repeats(sub, inside_repeat or high > 1):
                return True
        elif op == _constants.SUBPATTERN:
            if _pattern_nests_repeats(argument[-1], inside_repeat):
                return True
        elif op == _constants.BRANCH:
            if any(_pattern_nests_repeats(b, inside_repeat) for b in argument[1]):
                return True
        elif op in (_constants.ASSERT, _constants.ASSERT_NOT):
            if _pattern_nests_repeats(argument[1], inside_repeat):
                return True
        elif isinstance(argument, _parser.SubPattern) and _pattern_nests_repeats(
            argument, inside_repeat
        ):
            return True
    return False


def _re2_error_text(error: re2.error) -> str:
    detail = error.args[0] if error.args else ""
    return detail.decode(errors="replace") if isinstance(detail, bytes) else detail


def address_pattern_validate(pattern: str) -> None:
    """The validator of ``AddressFormat.pattern``: a regular expression that
    Python compiles and RE2 (the engine addresses are matched with) compiles
    within its memory budget, without nested unbounded repetition."""
    from re import _parser

    try:
        re.compile(pattern)
    except (re.error, OverflowError) as error:
        # OverflowError: a count beyond what Python can hold, like a{99999999999}
        raise ValidationError(
            "This is not a valid regular expression: %(error)s.",
            params={"error": error},
            code="invalid_pattern",
        ) from None
    try:
        re2.compile(pattern, _RE2_OPTIONS)
    except UnicodeEncodeError:
        raise ValidationError(
            "This pattern contains characters that are not valid text.",
            code="invalid_pattern",
        ) from None
    except re2.error as error:
        detail = _re2_error_text(error)
        if "too large" in detail:
            raise ValidationError(
                "This pattern is too large to check addresses against quickly: "
                "use smaller counts in {…} or fewer of them (an address has at "
                "most 255 characters).",
                code="pattern_too_large",
            ) from None
        raise ValidationError(
            "Addresses are matched with RE2, which does not support this "
            "pattern (%(error)s): look-arounds like (?=…), back-references like "
            "\\1 and counts above 1000 are not available.",
            params={"error": detail},
            code="unsupported_pattern",
        ) from None
    if _pattern_nests_repeats(_parser.parse(pattern)):
        raise ValidationError(
            "This pattern repeats a part that itself repeats without limit, "
            "like (a+)+, which most regular-expression engines match in "
            "exponential time. Write the inner part with a fixed count, like "
            "[0-9a-f]{40}.",
            code="nested_repetition",
        )


def _pattern_fits(pattern: str, address: str) -> bool:
    """Whether RE2 matches the whole address, in time linear in its length."""
    try:
        return re2.fullmatch(pattern, address, _RE2_OPTIONS) is not None
    except UnicodeEncodeError:  # a lone surrogate, from JSON's \ud800
        return False
    except re2.error:
        # A format saved before patterns had to compile in RE2: it matches
        # nothing until staff rewrite it (the admin then says why).
        logger.error(
            "address format pattern refused by RE2", extra={"pattern": pattern}
        )
        return False


def _format_problem(address: str, address_format: AddressFormat) -> str | None:
    """None if the address fits, else what is wrong with it (checksum only:
    a pattern mismatch is reported for all the token's formats at once)."""
    check = CHECKS.get(address_format.checksum)
    if check is None:
        return None
    try:
        check(address)
    except ChecksumMismatch as mismatch:
        return str(mismatch)
    return None


def address_canonical(
    *, token: Token, address: object, formats: Iterable[AddressFormat] | None = None
) -> str:
    """The address as the first network it fits spells it canonically, or
    ``InvalidAddress`` saying what is wrong (see ``address_networks``)."""
    spellings = address_networks(token=token, address=address, formats=formats)
    return next(iter(spellings.values()))


def address_networks(
    *, token: Token, address: object, formats: Iterable[AddressFormat] | None = None
) -> dict[str, str]:
    """The networks whose format the address fits, in the formats' order,
    each with the address as that network spells it canonically (a token
    without formats: ``{"": address}``), or
    ``InvalidAddress`` saying what is wrong. ``formats`` defaults to the
    token's ``AddressFormat`` rows; none means any address in printable
    ASCII is accepted. Characters outside ASCII pass only a format whose
    pattern allows them."""
    if not isinstance(address, str) or not address.strip():
        raise InvalidAddress("Enter the destination address.")
    address = address.strip()
    if len(address) > ADDRESS_MAX_LENGTH:
        raise InvalidAddress(
            f"An address has at most {ADDRESS_MAX_LENGTH} characters; this one "
            f"has {len(address)}."
        )
    # With or without formats: such characters display as nothing, or turn
    # the text around them, so the address reads as another one.
    if invisible := text_character_problem(address, spaces_allowed=False):
        raise InvalidAddress(
            f"This is not a valid address for {token.symbol}: it contains "
            f"{invisible}. Type or paste it again without it."
        )
    non_ascii = _non_ascii_problem(address)
    if formats is None:
        formats = token.address_formats.all()
    formats = list(formats)
    if not formats:
        if non_ascii:
            raise _non_ascii_refusal(token=token, problem=non_ascii)
        return {"": address}
    matching = [f for f in formats if _pattern_fits(f.pattern, address)]
    if not matching:
        if non_ascii:
            raise _non_ascii_refusal(token=token, problem=non_ascii)
        expected = "; or ".join(f"{f.description} ({f.network})" for f in formats)
        raise InvalidAddress(
            f"This is not a valid address for {token.symbol}: it should be {expected}."
        )
    problems = []
    fitting = {}
    for address_format in matching:
        problem = _format_problem(address, address_format)
        if problem is None:
            fitting[address_format.network] = _canonical(
                address, address_format.checksum
            )
        else:
            problems.append(problem)
    if fitting:
        return fitting
    if non_ascii:
        raise _non_ascii_refusal(token=token, problem=non_ascii)
    raise InvalidAddress(
        f"This is not a valid address for {token.symbol}: {problems[0]}. Copy it "
        "again from where it comes from."
    )


def _non_ascii_refusal(*, token: Token, problem: str) -> InvalidAddress:
    return InvalidAddress(
        f"This is not a valid address for {token.symbol}: it contains {problem}. "
        "Addresses use only Latin letters, digits and punctuation: type or paste "
        "it again from where it comes from."
    )


# -- Memos ------------------------------------------------------------------


def memo_name_in_text(memo_name: str) -> str:
    """A format's memo name inside a sentence: "Destination tag" becomes
    "destination tag"; an acronym (like "ID") stays as it is."""
    if memo_name[:1].isupper() and not memo_name[1:2].isupper():
        return memo_name[:1].lower() + memo_name[1:]
    return memo_name


def memo_canonical(
    *, token: Token, memo: object, formats: Iterable[AddressFormat]
) -> str:
    """The memo without its surrounding spaces ("" for none) if it is valid
    on one of ``formats``, the networks the coins may go out on (none: a
    token without formats, which takes no memo), or ``InvalidMemo`` saying
    what is wrong: a memo of spaces alone (only "" is none), a memo for a
    network that takes none, longer than ``MEMO_MAX_LENGTH``, with a
    character outside printable ASCII (a line break, an invisible or
    text-direction character, a look-alike letter), or not matching the
    network's ``memo_pattern`` (described in words by its
    ``memo_description`` when staff gave one)."""
    if not isinstance(memo, str):
        raise InvalidMemo("A memo is text.")
    if memo == "":
        return ""
    memo = memo.strip()
    if not memo:
        # Only "" says "no memo": spaces alone are more likely a paste that
        # lost the memo than a decision that the recipient needs none.
        raise InvalidMemo(
            "The memo is blank: give the memo, or leave it empty if the "
            "recipient needs none."
        )
    formats = list(formats)
    taking = [f for f in formats if f.memo_name]
    if not taking:
        if not formats:
            raise InvalidMemo(
                f"No networks are set up for {token.symbol}, so its addresses "
                "take no memo: leave the memo empty."
            )
        networks = " or ".join(f.network for f in formats)
        raise InvalidMemo(
            f"{token.symbol} on {networks} takes no memo: leave the memo empty."
        )
    if len(memo) > MEMO_MAX_LENGTH:
        raise InvalidMemo(
            f"A memo has at most {MEMO_MAX_LENGTH} characters; this one has "
            f"{len(memo)}."
        )
    # Shown to staff next to the address they send to, and in the mails: a
    # character that does not show as itself would make it read as another.
    if problem := text_character_problem(memo, spaces_allowed=True):
        raise InvalidMemo(
            f"The memo contains {problem}. Type or paste it again without it."
        )
    if problem := _non_ascii_problem(memo):
        raise InvalidMemo(
            f"The memo contains {problem}. Memos use only Latin letters, digits, "
            "punctuation and spaces: type or paste it again from where it comes "
            "from."
        )
    for address_format in taking:
        if not address_format.memo_pattern or _pattern_fits(
            address_format.memo_pattern, memo
        ):
            return memo
    first = taking[0]
    name = memo_name_in_text(first.memo_name)
    if first.memo_description:
        raise InvalidMemo(
            f"A {name} for {first.network} is {first.memo_description}; this "
            "one is not. Copy it again from the recipient's deposit instructions."
        )
    raise InvalidMemo(
        f"This is not a valid {name} for {first.network}: it must match the "
        f"pattern {first.memo_pattern}. Copy it again from the recipient's "
        "deposit instructions."
    )
