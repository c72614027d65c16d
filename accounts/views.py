from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_http_methods, require_POST

from accounts.forms import AvatarForm, SignUpForm
from accounts.page_cache import (
    profile_page_cached,
    profile_page_key,
    profile_page_store,
)
from accounts.selectors import ProfilePageData, profile_for_user, profile_page_data
from accounts.services import avatar_remove, avatar_replace
from storage.exceptions import StorageUnavailable
from trading.api.forms import ApiKeyCreateForm

STORAGE_DOWN_MESSAGE = (
    "Your picture could not be saved because file storage is unavailable right "
    "now. Nothing was changed; please try again in a few minutes."
)


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("accounts:profile")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
        messages.success(request, f"Welcome, {user.username}! Your account is ready.")
        return redirect("accounts:profile")
    return render(request, "accounts/signup.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
@cache_control(private=True, no_store=True)
def profile(request: HttpRequest) -> HttpResponse:
    """Show the profile; POST uploads a new picture (as a form or from script).

    The page's script posts with XMLHttpRequest to show upload progress and
    gets JSON back; without script the same form posts and the page reloads.
    A view of the page is served from `accounts.page_cache` while nothing it
    shows has changed.
    """
    data = profile_page_data(user=request.user)
    if request.method == "GET":
        key = profile_page_key(request, data=data)
        cached = profile_page_cached(request, key) if key else None
        if cached is not None:
            return cached
        return _profile_render(request, data=data, form=AvatarForm(), cache_key=key)
    wants_json = request.headers.get("x-requested-with") == "XMLHttpRequest"
    form = AvatarForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            avatar_replace(profile=data.profile, upload=form.cleaned_data["avatar"])
        except StorageUnavailable:
            form.add_error(None, STORAGE_DOWN_MESSAGE)
        else:
            if wants_json:
                return JsonResponse({"avatar_url": data.profile.avatar.url})
            messages.success(request, "Your profile picture was updated.")
            return redirect("accounts:profile")
    if wants_json:
        return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
    return _profile_render(request, data=data, form=form, status=400)


def _profile_render(
    request: HttpRequest,
    *,
    data: ProfilePageData,
    form: AvatarForm,
    status: int = 200,
    cache_key: str | None = None,
) -> HttpResponse:
    # Every form on the page carries this one token, so that the cache can
    # swap it for a new one on each view.
    csrf_token = get_token(request)
    response = render(
        request,
        "accounts/profile.html",
        {
            "profile": data.profile,
            "form": form,
            "api_keys": data.api_keys,
            "api_key_form": ApiKeyCreateForm(),
            "csrf_token": csrf_token,
        },
        status=status,
    )
    if cache_key:
        profile_page_store(cache_key, response, csrf_token=csrf_token)
    return response


@login_required
@require_POST
def avatar_delete(request: HttpRequest) -> HttpResponse:
    user_profile = profile_for_user(user=request.user)
    if user_profile.has_custom_avatar:
        avatar_remove(profile=user_profile)
        messages.success(request, "Your profile picture was removed.")
    return redirect("accounts:profile")
