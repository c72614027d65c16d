from django.contrib.auth.models import AbstractBaseUser

from accounts.models import Profile


def profile_for_user(*, user: AbstractBaseUser) -> Profile:
    """The user's profile, created if an old account has none (one query)."""
    profile, _ = Profile.objects.get_or_create(user=user)
    user.profile = profile  # the navigation reads it again: no second query
    return profile
