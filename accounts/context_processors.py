from django.http import HttpRequest

from accounts.models import DEFAULT_AVATAR, Profile


def navigation(request: HttpRequest) -> dict:
    """The signed-in user's avatar for the navigation bar (one query)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    def avatar_url() -> str:
        # Evaluated only when a template uses it; url() is built locally.
        try:
            return user.profile.avatar.url
        except Profile.DoesNotExist:
            return Profile(avatar=DEFAULT_AVATAR).avatar.url

    return {"nav_avatar_url": avatar_url}
