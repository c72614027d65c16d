from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.forms import AvatarForm, SignUpForm
from accounts.selectors import profile_for_user
from accounts.services import avatar_remove, avatar_replace
from storage.exceptions import StorageUnavailable
from trading.api.forms import ApiKeyCreateForm
from trading.api_keys import api_keys_for_user

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
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.username}! Your account is ready.")
        return redirect("accounts:profile")
    return render(request, "accounts/signup.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    """Show the profile; POST uploads a new picture (as a form or from script).

    The page's script posts with XMLHttpRequest to show upload progress and
    gets JSON back; without script the same form posts and the page reloads.
    """
    user_profile = profile_for_user(user=request.user)
    wants_json = request.headers.get("x-requested-with") == "XMLHttpRequest"
    form = AvatarForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                avatar_replace(profile=user_profile, upload=form.cleaned_data["avatar"])
            except StorageUnavailable:
                form.add_error(None, STORAGE_DOWN_MESSAGE)
            else:
                if wants_json:
                    return JsonResponse({"avatar_url": user_profile.avatar.url})
                messages.success(request, "Your profile picture was updated.")
                return redirect("accounts:profile")
        status = 400
        if wants_json:
            return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
    return render(
        request,
        "accounts/profile.html",
        {
            "profile": user_profile,
            "form": form,
            "api_keys": api_keys_for_user(user=request.user),
            "api_key_form": ApiKeyCreateForm(),
        },
        status=status,
    )


@login_required
@require_POST
def avatar_delete(request: HttpRequest) -> HttpResponse:
    user_profile = profile_for_user(user=request.user)
    if user_profile.has_custom_avatar:
        avatar_remove(profile=user_profile)
        messages.success(request, "Your profile picture was removed.")
    return redirect("accounts:profile")
