"""Demo data for development: users, tokens and their pictures.

Idempotent: running it again adds only what is missing, logos and avatars
whose files are gone (``media/`` deleted) included. They are drawn here (no
network) and stored through the same services as uploads, so they land in
whichever storage is configured, resized like any upload.

On a database that already holds data, what conflicts with it (a demo e-mail
address used by someone else, BTC listed with fewer decimals than the demo
steps, an inactive token, a halted market or one whose steps the demo orders
do not fit) is skipped with a one-line note on stderr, and the rest is seeded:
``make run`` seeds then starts the app, so the command still exits 0.
"""

import io
from decimal import Decimal

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Q
from PIL import Image, ImageDraw, ImageFont

from accounts.services import avatar_replace
from storage.exceptions import StorageUnavailable
from tokens.models import Token
from tokens.services import token_create, token_logo_replace
from trading.matcher import drain
from trading.models import Market
from trading.money import grouped
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

# Networks whose recipients at an exchange are told apart by a memo (the
# name staff give it, the pattern a memo of that network matches, and how it
# looks in words for a wrong memo's message).
DEMO_MEMOS = {
    "XRP Ledger": ("Destination tag", "[0-9]{1,10}", "a number of 1 to 10 digits")
}


def demo_memo_options(network: str) -> dict[str, str]:
    """``address_format_ensure``'s memo options for the demo ``network``."""
    if network not in DEMO_MEMOS:
        return {}
    memo_name, memo_pattern, memo_description = DEMO_MEMOS[network]
    return {
        "memo_name": memo_name,
        "memo_pattern": memo_pattern,
        "memo_description": memo_description,
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


def _stored(picture) -> bool:
    """Whether ``picture`` (a FieldFile) names a file its storage holds."""
    return bool(picture) and picture.storage.exists(picture.name)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def demo_orders(price: Decimal) -> tuple[list[dict], list[dict]]:
    """The staff user's resting book around ``price``, and the demo user's
    market orders against it (``order_place`` arguments)."""
    book = [
        {
            "side": side,
            "type": "limit",
            "quantity": Decimal(step),
            "price": level.quantize(Decimal("0.01")),
        }
        for step in range(1, 6)
        for side, level in (
            ("sell", price + price * Decimal(step) / 200),
            ("buy", price - price * Decimal(step) / 200),
        )
    ]
    trades = [
        {
            "side": side,
            "type": "market",
            "quantity": Decimal("0.5"),
            # A market buy names the highest price it may pay.
            "protection_price": (price * 2) if side == "buy" else None,
        }
        for side in ("buy", "sell", "buy")
    ]
    return book, trades


def _orders_misfit(market: Market, orders: list[dict]) -> str | None:
    """Why the market would refuse one of ``orders``, or None."""
    for order in orders:
        quantity, price = order["quantity"], order.get("price")
        for value in (price, order.get("protection_price")):
            if value is not None and value % market.price_step:
                step = grouped(market.price_step)
                return f"its price step {step} does not fit the demo price {value}"
        if quantity % market.amount_step:
            step = grouped(market.amount_step)
            return f"its amount step {step} does not fit the demo quantity {quantity}"
        if price is not None and price * quantity < market.min_notional:
            minimum = grouped(market.min_notional)
            return (
                f"its minimum order value {minimum} is above the demo order of "
                f"{quantity} at {price}"
            )
    return None


class Command(BaseCommand):
    help = (
        "Create demo users, tokens with logos, address formats and markets with "
        "some trades (development only; idempotent). On a database that already "
        "holds data, whatever conflicts with it (an e-mail address in use, a "
        "token with other decimals or inactive, a halted market or one with "
        "other steps) is skipped with a note on stderr and the rest is created; "
        "the command still exits 0."
    )

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
            users = self._users()
            self._tokens()
        except StorageUnavailable as exc:
            raise CommandError(str(exc)) from exc
        self._address_formats()
        self._markets(users)

    def _skip(self, what: str, why: str) -> None:
        self.stderr.write(
            f"seed_demo: skipped {what}: {why}", style_func=self.style.WARNING
        )

    def _users(self) -> dict:
        """The demo users by username, created if missing; one whose e-mail
        address someone else has is skipped."""
        users = {}
        for index, spec in enumerate(DEMO_USERS):
            user = self._user_ensure(spec)
            if user is None:
                continue
            users[user.username] = user
            if not user.profile.has_custom_avatar or not _stored(user.profile.avatar):
                colour = DEMO_TOKENS[index * 3][3]
                picture = draw_avatar(user.username[0], colour)
                avatar_replace(
                    profile=user.profile,
                    upload=SimpleUploadedFile(f"{user.username}.png", picture),
                )
        return users

    def _user_ensure(self, spec: dict):
        """The user named in ``spec``, as it is if it exists; else created with
        its verified e-mail address, or None (noted) if that address is taken."""
        User = get_user_model()
        username = spec["username"]
        user = User.objects.filter(username=username).first()
        if user is not None:
            return user
        email = f"{username}@example.com"
        owner = User.objects.filter(
            Q(email__iexact=email) | Q(emailaddress__email__iexact=email)
        ).first()
        if owner is not None:
            self._skip(f"user {username}", f"{email} belongs to user {owner}")
            return None
        # The user and its address together: never a user that cannot sign in.
        with transaction.atomic():
            user = User.objects.create_user(
                username,
                email=email,
                password=spec["password"],
                is_staff=spec["is_staff"],
                is_superuser=spec["is_staff"],
            )
            # Verified, so that the demo users can trade at once.
            EmailAddress.objects.create(
                user=user, email=email, primary=True, verified=True
            )
        self.stdout.write(
            f"user {username} / {spec['password']}"
            + (" (staff)" if spec["is_staff"] else "")
        )
        return user

    def _tokens(self) -> None:
        for symbol, name, decimals, colour in DEMO_TOKENS:
            logo = SimpleUploadedFile(
                f"{symbol.lower()}.png", draw_logo(symbol, colour)
            )
            token = Token.objects.filter(symbol=symbol).first()
            if token is None:
                token_create(name=name, symbol=symbol, decimals=decimals, logo=logo)
                self.stdout.write(f"token {symbol}")
            elif not _stored(token.logo):
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
                    **demo_memo_options(network),
                )
                if created:
                    self.stdout.write(f"address format {symbol} on {network}")

    def _markets(self, users: dict) -> None:
        """Markets with a little history: funds, a resting book and some trades."""
        demo, admin = (users.get(spec["username"]) for spec in DEMO_USERS)
        missing = [
            spec["username"] for spec in DEMO_USERS if spec["username"] not in users
        ]
        usdt = Token.objects.get(symbol="USDT")
        for symbol, price in DEMO_MARKETS:
            base = Token.objects.get(symbol=symbol)
            pair = Market.symbol_for(base, usdt)
            inactive = [token.symbol for token in (base, usdt) if not token.is_active]
            if inactive:
                self._skip(f"market {pair}", f"{inactive[0]} is inactive (delisted)")
                continue
            market = Market.objects.filter(base=base, quote=usdt).first()
            if market is None:
                try:
                    market = market_create(
                        base=base,
                        quote=usdt,
                        price_step=Decimal("0.01"),
                        amount_step=Decimal("0.0001"),
                        min_notional=Decimal("1"),
                        maker_fee=Decimal("0.001"),
                        taker_fee=Decimal("0.002"),
                    )
                except ValidationError as error:
                    self._skip(
                        f"market {pair}",
                        "; ".join(
                            f"its demo {field.replace('_', ' ')}: {' '.join(texts)}"
                            for field, texts in error.message_dict.items()
                        ),
                    )
                    continue
                self.stdout.write(f"market {market.symbol}")
            if market.orders.exists():
                continue
            book, trades = demo_orders(price)
            if market.status != Market.Status.OPEN:
                why = f"the market is {market.get_status_display().lower()}"
            elif missing:
                why = f"there is no user {missing[0]} to trade"
            else:
                why = _orders_misfit(market, book + trades)
            if why is not None:
                self._skip(f"the demo orders on {pair}", why)
                continue
            self._market_history(market, demo=demo, admin=admin, price=price)

    def _market_history(self, market: Market, *, demo, admin, price: Decimal) -> None:
        base, usdt = market.base, market.quote
        book, trades = demo_orders(price)
        for user in (demo, admin):
            for token, amount in ((base, Decimal(1000)), (usdt, price * 1000)):
                deposit_credit(
                    user=user,
                    token=token,
                    amount=amount,
                    reference=f"seed-demo-{market.symbol}-{user.username}-{token.symbol}",
                )
        # The staff user makes the market; the demo user trades against it.
        for order in book:
            order_place(user=admin, market=market, **order)
        # The book first: market orders are matched against it in turn.
        drain(market_id=market.pk)
        for order in trades:
            order_place(user=demo, market=market, **order)
        # No matcher runs yet (make run starts it next): match them here.
        drain(market_id=market.pk)
