from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, cached_property
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Model
from django.utils import timezone

from accounts.models import Profile
from trading.models import ApiKey

_PROFILE_FIELDS = ("id", "avatar", "updated_at")
# Every column of an active key the page could show (not the secret's digest).
_API_KEY_FIELDS = ("id", "name", "prefix", "scopes", "created_at", "last_used_at")


def profile_for_user(*, user: AbstractBaseUser) -> Profile:
    """The user's profile (one query at most), created if an old account has none.

    Every new user gets a profile from a signal, so the fallback is for
    accounts made before it, or by fixtures without one.
    """
    try:
        return user.profile
    except Profile.DoesNotExist:
        profile, _ = Profile.objects.get_or_create(user=user)
        user.profile = profile  # the navigation reads it: no second query
        return profile


@dataclass(frozen=True)
class ProfilePageData:
    """What the profile page shows from the database besides the user row.

    ``rows`` are the profile joined with the user's active API keys, newest
    first, as the database returned them: equal rows mean an equal page.
    """

    user: AbstractBaseUser
    rows: tuple[tuple[Any, ...], ...]

    @property
    def avatar_name(self) -> str:
        return self.rows[0][_PROFILE_FIELDS.index("avatar")]

    @cached_property
    def profile(self) -> Profile:
        values = self.rows[0][: len(_PROFILE_FIELDS)]
        profile = _instance(
            Profile,
            {
                **dict(zip(_PROFILE_FIELDS, values, strict=True)),
                "user_id": self.user.pk,
            },
        )
        profile.user = self.user
        return profile

    @cached_property
    def api_keys(self) -> list[ApiKey]:
        start = len(_PROFILE_FIELDS)
        return [
            _instance(
                ApiKey,
                {
                    **dict(zip(_API_KEY_FIELDS, row[start:], strict=True)),
                    "user_id": self.user.pk,
                    "revoked_at": None,
                },
            )
            for row in self.rows
            if row[start] is not None
        ]


def profile_page_data(*, user: AbstractBaseUser) -> ProfilePageData:
    """The user's profile and active API keys in one query (created if missing).

    Written in SQL because this read runs on every view of the profile page,
    cached or not: the ORM takes over ten times longer compiling the same two
    queries and building the instances than the database takes answering
    this one.
    """
    rows = _profile_page_rows(user=user)
    if not rows:
        profile_for_user(user=user)
        rows = _profile_page_rows(user=user)
    return ProfilePageData(user=user, rows=rows)


def _profile_page_rows(*, user: AbstractBaseUser) -> tuple[tuple[Any, ...], ...]:
    with connection.cursor() as cursor:
        cursor.execute(_profile_page_sql(connection.vendor), [user.pk])
        return tuple(cursor.fetchall())


@cache
def _profile_page_sql(vendor: str) -> str:
    quote = connection.ops.quote_name

    def column(model: type, alias: str, field: str) -> str:
        return f"{alias}.{quote(model._meta.get_field(field).column)}"

    selected = [column(Profile, "p", name) for name in _PROFILE_FIELDS] + [
        column(ApiKey, "k", name) for name in _API_KEY_FIELDS
    ]
    # Only names from the models, quoted, go into the text; the user's id is
    # a parameter. The order is that of `trading.api_keys.api_keys_for_user`.
    return (
        f"SELECT {', '.join(selected)} "  # noqa: S608
        f"FROM {quote(Profile._meta.db_table)} p "
        f"LEFT JOIN {quote(ApiKey._meta.db_table)} k "
        f"ON {column(ApiKey, 'k', 'user')} = {column(Profile, 'p', 'user')} "
        f"AND {column(ApiKey, 'k', 'revoked_at')} IS NULL "
        f"WHERE {column(Profile, 'p', 'user')} = %s "
        f"ORDER BY {column(ApiKey, 'k', 'created_at')} DESC, "
        f"{column(ApiKey, 'k', 'id')} DESC"
    )


def _instance(model: type[Model], values: dict[str, Any]) -> Any:
    """A model instance from column values, as the ORM would build it.

    Fields left out are deferred; SQLite's naive datetimes (stored in UTC)
    become aware, as PostgreSQL's already are.
    """
    names = [f.attname for f in model._meta.concrete_fields if f.attname in values]
    return model.from_db(
        connection.alias, names, [_aware(values[name]) for name in names]
    )


def _aware(value: Any) -> Any:
    if isinstance(value, datetime) and settings.USE_TZ and timezone.is_naive(value):
        return timezone.make_aware(value, UTC)
    return value
