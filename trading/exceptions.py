"""Refusals of the trading services, each with a stable ``code``.

Views, the admin and the API turn them into messages or JSON errors; the code
never changes once published, the message may be reworded.
"""

from __future__ import annotations


class TradingError(Exception):
    code = "trading_error"
    default_message = "The request was refused."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class InvalidAmount(TradingError):
    code = "invalid_amount"
    default_message = "The amount must be a positive Decimal."


class PrecisionTooHigh(TradingError):
    code = "precision_too_high"
    default_message = "The value has more precision than allowed."


class BelowMinNotional(TradingError):
    code = "below_min_notional"
    default_message = "The order is smaller than the market's minimum value."


class InsufficientBalance(TradingError):
    code = "insufficient_balance"
    default_message = "The available balance is too low."


class InvalidOrder(TradingError):
    code = "invalid_order"
    default_message = "The order's options do not go together."


class MarketClosed(TradingError):
    code = "market_closed"
    default_message = "The market does not accept new orders."


class TokenNotListed(TradingError):
    code = "token_not_listed"
    default_message = "The token is not listed now."


class PostOnlyWouldTake(TradingError):
    code = "post_only_would_take"
    default_message = "The post-only order would trade at once; it was not placed."


class FillOrKillNotFilled(TradingError):
    code = "fill_or_kill_not_filled"
    default_message = "The fill-or-kill order cannot be filled entirely at once."


class OrderNotOpen(TradingError):
    code = "order_not_open"
    default_message = "The order is no longer open."


class OrderChanged(TradingError):
    """An amend the matcher refused because the order changed while it
    waited: it filled past the new quantity, or a fill, self-trade
    prevention or an earlier amend left what it has reserved short of the
    amended order. The order is unchanged."""

    code = "order_changed"
    default_message = (
        "The order changed while the amend waited: the amend was refused and "
        "the order is unchanged."
    )


class OrderNotFound(TradingError):
    code = "order_not_found"
    default_message = "No such order."


class DuplicateReference(TradingError):
    code = "duplicate_reference"
    default_message = "This reference is already used by a different request."


class DuplicateClientOrderId(TradingError):
    code = "duplicate_client_order_id"
    default_message = "An open order already uses this client order id."


class InvalidReference(TradingError):
    code = "invalid_reference"
    default_message = "A reference of 1 to 100 characters is required."


class InvalidAddress(TradingError):
    code = "invalid_address"
    default_message = "A withdrawal address of 1 to 255 characters is required."


class InvalidMemo(TradingError):
    """A memo (destination tag) the network does not take, or not written
    as the network writes them."""

    code = "invalid_memo"
    default_message = "This memo is not valid for the address's network."


class MemoRequired(TradingError):
    """A withdrawal on a network that takes a memo, without one and without
    saying that the recipient needs none: a forgotten destination tag loses
    the coins at the recipient's exchange."""

    code = "memo_required"
    default_message = (
        "This network takes a memo: give the recipient's, or say that they need none."
    )


class AddressNotAllowed(TradingError):
    code = "address_not_allowed"
    default_message = (
        "You allow withdrawals only to saved addresses, and this one is not "
        "saved or not usable yet."
    )


class AddressAlreadySaved(TradingError):
    code = "address_already_saved"
    default_message = "This address is already in your address book."


class WithdrawalNotPending(TradingError):
    code = "withdrawal_not_pending"
    default_message = "The withdrawal has already been decided."


class WithdrawalNotProcessing(TradingError):
    """Approving a withdrawal staff have not started sending: whoever sends
    it starts sending first, so that its owner can no longer cancel it."""

    code = "withdrawal_not_processing"
    default_message = "Start sending the withdrawal before approving it."


class WithdrawalNotFound(TradingError):
    code = "withdrawal_not_found"
    default_message = "No such withdrawal."


class WithdrawalLimitExceeded(TradingError):
    code = "withdrawal_limit_exceeded"
    default_message = "The withdrawal is over the token's daily limit."


class EmailNotVerified(TradingError):
    code = "email_unverified"
    default_message = (
        "Verify your e-mail address before you trade or withdraw: open the link "
        "we sent you, or send a new one from your profile."
    )


class IdentityNotVerified(TradingError):
    """A withdrawal by a user whose identity staff have not approved, while
    ``IDENTITY_REQUIRED_TO_WITHDRAW`` is on."""

    code = "identity_unverified"
    default_message = (
        "Verify your identity before you withdraw: send your ID documents on "
        "the identity verification page (/accounts/verification/); you can "
        "withdraw once staff approve them."
    )


class BalanceLimitExceeded(TradingError):
    code = "balance_limit"
    default_message = (
        "This trade would take a balance to 10^18 or more, above the largest "
        "amount the exchange holds; nothing was changed and its funds are "
        "available again."
    )


class CommandFailed(TradingError):
    code = "matcher_error"
    default_message = (
        "The matcher could not apply this request; nothing was changed and its "
        "funds are available again. Please try again."
    )
