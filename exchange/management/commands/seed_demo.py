"""Demo data for development: users, tokens and their pictures.

Idempotent: running it again adds only what is missing. Logos and avatars are
drawn here (no network) and stored through the same services as uploads, so
they land in whichever storage is configured, resized like any upload.
"""

import io
from decimal import Decimal

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand, CommandError
from PIL import Image, ImageDraw, ImageFont

from accounts.services import avatar_replace
from storage.exceptions import StorageUnavailable
from tokens.models import Token
from tokens.services import token_create, token_logo_replace
from trading.matcher import drain
from trading.models import Market
from trading.orders import order_place
from trading.services import (
    address_format_ensure,
    deposit_credit,
    market_create,
)

# Published on purpose: for development databases only (see --force).
DEMO_USERS = [
    {"username": "demo", "password": "demo-pass-2026", "is_staff": False},
    {"username": "admin", "password": "admin-pass-2026", "is_staff": True},
]

DEMO_TOKENS = [
    ("BTC", "Bitcoin", 8, (247, 147, 26)),
    ("ETH", "Ether", 18, (98, 126, 234)),
    ("USDT", "Tether USD", 6, (38, 161, 123)),
    ("SOL", "Solana", 9, (153, 69, 255)),
    ("BNB", "BNB", 18, (243, 186, 47)),
    ("XRP", "XRP", 6, (35, 41, 47)),
    ("ADA", "Cardano", 6, (0, 51, 173)),
    ("DOGE", "Dogecoin", 8, (194, 166, 51)),
    ("DOT", "Polkadot", 10, (230, 0, 122)),
    ("LTC", "Litecoin", 8, (52, 93, 157)),
    ("LINK", "Chainlink", 18, (42, 90, 218)),
    ("USDC", "USD Coin", 6, (39, 117, 202)),
]

# Address formats of the networks the demo tokens are withdrawn on.
_B58 = "[1-9A-HJ-NP-Za-km-z]"  # base58: no 0, O, I or l
_BECH32 = "[02-9ac-hj-np-z]"  # Bech32's data characters: no 1, b, i or o
_EVM = (r"0x[0-9a-fA-F]{40}", "eip55", "0x followed by 40 hex digits")
DEMO_ADDRESS_FORMATS = {
    "BTC": [
        (
            "Bitcoin, SegWit",
            rf"(?i)bc1{_BECH32}{{8,87}}",
            "segwit",
            "bc1 followed by letters and digits",
        ),
        (
            "Bitcoin, legacy",
            rf"[13]{_B58}{{25,34}}",
            "base58check",
            "1 or 3 followed by 25 to 34 letters and digits",
        ),
    ],
    "ETH": [("Ethereum", *_EVM)],
    "USDT": [("Ethereum, ERC-20", *_EVM)],
    "USDC": [("Ethereum, ERC-20", *_EVM)],
    "LINK": [("Ethereum, ERC-20", *_EVM)],
    "BNB": [("BNB Smart Chain, BEP-20", *_EVM)],
    "SOL": [("Solana", rf"{_B58}{{32,44}}", "", "32 to 44 letters and digits")],
    "XRP": [
        (
            "XRP Ledger",
            rf"r{_B58}{{24,34}}",
            "base58check_xrp",
            "r followed by 24 to 34 letters and digits",
        )
    ],
    "ADA": [
        (
            "Cardano, Shelley",
            rf"(?i)addr1{_BECH32}{{50,200}}",
            "bech32",
            "addr1 followed by letters and digits",
        )
    ],
    "DOGE": [
        (
            "Dogecoin",
            rf"[DA9]{_B58}{{25,34}}",
            "base58check",
            "D, A or 9 followed by 25 to 34 letters and digits",
        )
    ],
    "DOT": [
        (
            "Polkadot",
            rf"1{_B58}{{46,47}}",
            "ss58",
            "1 followed by 46 or 47 letters and digits",
        )
    ],
    "LTC": [
        (
            "Litecoin, SegWit",
            rf"(?i)ltc1{_BECH32}{{8,87}}",
            "segwit",
            "ltc1 followed by letters and digits",
        ),
        (
            "Litecoin, legacy",
            rf"[LM]{_B58}{{25,34}}",
            "base58check",
            "L or M followed by 25 to 34 letters and digits",
        ),
    ],
}


DEMO_MARKETS = [
    ("BTC", Decimal("64000")),
    ("ETH", Decimal("3200")),
    ("SOL", Decimal("150")),
]


def draw_logo(symbol: str, colour: tuple[int, int, int]) -> bytes:
    """A round badge with the symbol, on a transparent background (PNG)."""
    size = 512
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((8, 8, size - 8, size - 8), fill=(*colour, 255))
    font = ImageFont.load_default(size=190 if len(symbol) <= 3 else 140)
    draw.text((size / 2, size / 2), symbol, fill="white", font=font, anchor="mm")
    return _png(image)


def draw_avatar(initial: str, colour: tuple[int, int, int]) -> bytes:
    image = Image.new("RGB", (600, 600), colour)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=320)
    draw.text((300, 300), initial.upper(), fill="white", font=font, anchor="mm")
    return _png(image)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


class Command(BaseCommand):
    help = "Create demo users and tokens with logos (development only; idempotent)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--force",
            action="store_true",
            help="Run even with DEBUG=false (the demo passwords are public).",
        )

    def handle(self, *args, force: bool = False, **options) -> None:
        if not settings.DEBUG and not force:
            raise CommandError(
                "seed_demo creates users whose passwords are published; it runs "
                "only with DEBUG=true (or --force on a database of your own)."
            )
        try:
            self._users()
            self._tokens()
        except StorageUnavailable as exc:
            raise CommandError(str(exc)) from exc
        self._address_formats()
        self._markets()

    def _users(self) -> None:
        User = get_user_model()
        for index, spec in enumerate(DEMO_USERS):
            user, created = User.objects.get_or_create(
                username=spec["username"],
                defaults={
                    "is_staff": spec["is_staff"],
                    "is_superuser": spec["is_staff"],
                },
            )
            if created:
                user.set_password(spec["password"])
                user.email = f"{user.username}@example.com"
                user.save(update_fields=["password", "email"])
                # Verified, so that the demo users can trade at once.
                EmailAddress.objects.create(
                    user=user, email=user.email, primary=True, verified=True
                )
                self.stdout.write(
                    f"user {user.username} / {spec['password']}"
                    + (" (staff)" if spec["is_staff"] else "")
                )
            if not user.profile.has_custom_avatar:
                colour = DEMO_TOKENS[index * 3][3]
                picture = draw_avatar(user.username[0], colour)
                avatar_replace(
                    profile=user.profile,
                    upload=SimpleUploadedFile(f"{user.username}.png", picture),
                )

    def _tokens(self) -> None:
        for symbol, name, decimals, colour in DEMO_TOKENS:
            logo = SimpleUploadedFile(
                f"{symbol.lower()}.png", draw_logo(symbol, colour)
            )
            token = Token.objects.filter(symbol=symbol).first()
            if token is None:
                token_create(name=name, symbol=symbol, decimals=decimals, logo=logo)
                self.stdout.write(f"token {symbol}")
            elif not token.logo:
                token_logo_replace(token=token, upload=logo)

    def _address_formats(self) -> None:
        for symbol, formats in DEMO_ADDRESS_FORMATS.items():
            token = Token.objects.get(symbol=symbol)
            for network, pattern, checksum, description in formats:
                _, created = address_format_ensure(
                    token=token,
                    network=network,
                    pattern=pattern,
                    checksum=checksum,
                    description=description,
                )
                if created:
                    self.stdout.write(f"address format {symbol} on {network}")

    def _markets(self) -> None:
        """Markets with a little history: funds, a resting book and some trades."""
        User = get_user_model()
        demo, admin = (User.objects.get(username=u["username"]) for u in DEMO_USERS)
        usdt = Token.objects.get(symbol="USDT")
        for symbol, price in DEMO_MARKETS:
            base = Token.objects.get(symbol=symbol)
            market = Market.objects.filter(base=base, quote=usdt).first()
            if market is None:
                market = market_create(
                    base=base,
                    quote=usdt,
                    price_step=Decimal("0.01"),
                    amount_step=Decimal("0.0001"),
                    min_notional=Decimal("1"),
                    maker_fee=Decimal("0.001"),
                    taker_fee=Decimal("0.002"),
                )
                self.stdout.write(f"market {market.symbol}")
            if market.orders.exists():
                continue
            for user in (demo, admin):
                for token, amount in ((base, Decimal(1000)), (usdt, price * 1000)):
                    deposit_credit(
                        user=user,
                        token=token,
                        amount=amount,
                        reference=f"seed-demo-{market.symbol}-{user.username}-{token.symbol}",
                    )
            # The staff user makes the market; the demo user trades against it.
            for step in range(1, 6):
                spread = price * Decimal(step) / 200
                for side, level in (("sell", price + spread), ("buy", price - spread)):
                    order_place(
                        user=admin,
                        market=market,
                        side=side,
                        type="limit",
                        quantity=Decimal(step),
                        price=level.quantize(Decimal("0.01")),
                    )
            # The book first: market orders are matched against it in turn.
            drain(market_id=market.pk)
            for side in ("buy", "sell", "buy"):
                order_place(
                    user=demo,
                    market=market,
                    side=side,
                    type="market",
                    quantity=Decimal("0.5"),
                    # A market buy names the highest price it may pay.
                    protection_price=(price * 2) if side == "buy" else None,
                )
            # No matcher runs yet (make run starts it next): match them here.
            drain(market_id=market.pk)
