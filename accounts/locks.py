"""Row locks of the accounts app."""

from __future__ import annotations

from django.contrib.auth import get_user_model


def user_serialize(*, user_id: int) -> None:
    """Lock the user's row until the transaction ends, so that operations that
    read the user's rows and then add one (counting API keys or saved
    addresses against a limit, looking for an earlier notice) run one at a
    time per user.

    ``FOR NO KEY UPDATE``: rows that refer to the user (orders, ledger
    entries) are still inserted meanwhile, as their foreign-key checks take a
    weaker lock that this one does not block.
    """
    get_user_model().objects.select_for_update(no_key=True).only("pk").get(pk=user_id)
