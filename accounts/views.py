from allauth.account.adapter import get_adapter
from allauth.account.models import EmailAddress
from allauth.account.views import EmailView as AllauthEmailView
from allauth.account.views import SignupView as AllauthSignupView
from allauth.usersessions.models import UserSession
from csp.decorators import csp_update
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_http_methods, require_POST

from accounts.forms import AvatarForm
from accounts.models import Profile
from accounts.selectors import profile_for_user, security_overview
from accounts.services import (
    avatar_remove,
    avatar_replace,
    session_end_one,
    sessions_end_others,
)
from storage.exceptions import (
    ImageDecodersBusy,
    StorageFull,
    StorageUnavailable,
    UploadThrottled,
)
from storage.throttle import image_upload_throttle

STORAGE_DOWN_MESSAGE = (
    "Your picture could not be saved because file storage is unavailable right "
    "now. Nothing was changed; please try again in a few minutes."
)
STORAGE_FULL_MESSAGE = (
    "Your picture could not be saved: the server's disk is full. Nothing was "
    "changed; please try again later."
)


class SignupView(AllauthSignupView):
    """allauth's sign-up, its form checked and saved in one transaction: the
    claims the form takes on the name and the address (``SignupForm``) hold
    until the account made with them is committed. The rest (the mails, the
    log-in) comes after the commit, so a slow mail server holds no claim."""

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        form = self.get_form()  # kept: allauth's post goes on with this one
        with transaction.atomic():
            if form.is_valid() and not form.account_already_exists:
                form.try_save(request)
        return super().post(request, *args, **kwargs)


NOT_YOUR_ADDRESS_MESSAGE = (
    "No confirmation link was sent: that address is not on your account. "
    "Your address is shown below; change it there if it is not the right one."
)


class EmailView(AllauthEmailView):
    """allauth's e-mail page, which also takes the profile's "Send the link
    again". allauth sends no link, without a word, to an address that is not
    the user's or that had one within the ``confirm_email`` limit: this says
    so (and when to ask again). Nor is one sent to an address another account
    verified first, which allauth would mail a link that cannot work."""

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if "action_send" in request.POST:
            email = request.POST.get("email", "")
            if not EmailAddress.objects.filter(
                user_id=request.user.pk, email__iexact=email
            ).exists():
                messages.error(request, NOT_YOUR_ADDRESS_MESSAGE)
                return redirect(self.get_success_url())
            refusal = get_adapter(request).confirmation_link_refusal(request, email)
            if refusal:
                messages.warning(request, refusal)
                return redirect(self.get_success_url())
        return super().post(request, *args, **kwargs)


@login_required
@require_http_methods(["GET", "POST"])
@cache_control(private=True, no_store=True)
def profile(request: HttpRequest) -> HttpResponse:
    """Show the profile; POST uploads a new picture (as a form or from script).

    The page's script posts with XMLHttpRequest to show upload progress and
    gets JSON back; without script the same form posts and the page reloads.
    """
    user_profile = profile_for_user(user=request.user)
    if request.method == "GET":
        return profile_render(request, profile=user_profile, form=AvatarForm())
    wants_json = request.headers.get("x-requested-with") == "XMLHttpRequest"
    if request.method == "POST":
        # Counted before the upload is parsed or decoded: a refused upload
        # costs the same CPU as an accepted one.
        try:
            image_upload_throttle(user_id=request.user.pk)
        except UploadThrottled as throttled:
            return _upload_throttled(
                request, profile=user_profile, throttled=throttled, json=wants_json
            )
    form = AvatarForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            avatar_replace(profile=user_profile, upload=form.cleaned_data["avatar"])
        except StorageFull:
            form.add_error(None, STORAGE_FULL_MESSAGE)
        except StorageUnavailable:
            form.add_error(None, STORAGE_DOWN_MESSAGE)
        else:
            if wants_json:
                return JsonResponse({"avatar_url": user_profile.avatar.url})
            messages.success(request, "Your profile picture was updated.")
            return redirect("accounts:profile")
    # Every decode slot of the host was taken: nothing wrong with the picture.
    busy = form.has_error("avatar", ImageDecodersBusy.code)
    status = 503 if busy else 400
    if wants_json:
        response: HttpResponse = JsonResponse(
            {"errors": form.errors.get_json_data()}, status=status
        )
    else:
        response = profile_render(
            request, profile=user_profile, form=form, status=status
        )
    if busy:
        response["Retry-After"] = str(ImageDecodersBusy.retry_after)
    return response


def _upload_throttled(
    request: HttpRequest, *, profile: Profile, throttled: UploadThrottled, json: bool
) -> HttpResponse:
    if json:
        error = {"message": str(throttled), "code": throttled.code}
        response: HttpResponse = JsonResponse(
            {"errors": {"avatar": [error]}, "retry_after": throttled.retry_after},
            status=429,
        )
    else:
        messages.error(request, str(throttled))
        response = profile_render(request, profile=profile, form=AvatarForm())
        response.status_code = 429
    response["Retry-After"] = str(throttled.retry_after)
    return response


# The picture chosen for upload is previewed from a blob: URL of the page's own.
@csp_update({"img-src": ["blob:"]})
def profile_render(
    request: HttpRequest,
    *,
    profile: Profile | None = None,
    form: AvatarForm | None = None,
    status: int = 200,
    extra_context: dict | None = None,
) -> HttpResponse:
    """The profile page. Another app's form on it that was refused (the API
    keys') renders it again through this, the bound form in ``extra_context``."""
    security = security_overview(user=request.user)
    return render(
        request,
        "accounts/profile.html",
        {
            "profile": profile or profile_for_user(user=request.user),
            "form": form or AvatarForm(),
            # For the upload script: the largest picture (storage.images) and
            # the largest request body (core.middleware) the server accepts.
            "max_upload_size": settings.MAX_UPLOAD_SIZE,
            "max_request_size": settings.MAX_REQUEST_BODY_SIZE,
            "email_verified": security.email_verified,
            "email_address": security.email_address,
            "email_taken": security.email_taken,
            "mfa_enabled": security.mfa_enabled,
            "sessions": security.sessions,
            "security_events": security.events,
            **(extra_context or {}),
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


@login_required
@require_POST
def session_end(request: HttpRequest, pk: int) -> HttpResponse:
    """End one of the user's other sessions (the browser is signed out there)."""
    session = get_object_or_404(UserSession, pk=pk, user_id=request.user.pk)
    if session.is_current():
        messages.error(request, "Use “Log out” to end this browser's session.")
    else:
        session_end_one(request=request, session=session)
        messages.success(request, "That session was ended.")
    return redirect("accounts:profile")


@login_required
@require_POST
def sessions_end_others_view(request: HttpRequest) -> HttpResponse:
    sessions_end_others(request=request, user=request.user)
    messages.success(request, "Every other session was ended.")
    return redirect("accounts:profile")
