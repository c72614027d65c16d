"""The profile page's API-key buttons: create (the secret is shown once, on
the page this returns), revoke one, revoke all (each after a confirmation)."""

from __future__ import annotations

from allauth.account.decorators import reauthentication_required
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts.views import profile_render
from trading.api.forms import ApiKeyCreateForm
from trading.api_keys import api_key_create, api_key_revoke, api_keys_revoke_all
from trading.models import ApiKey
from trading.notices import api_key_created_notice, api_keys_revoked_notice


@never_cache  # the page holds the secret: no cache may keep it
@login_required
@require_POST
# Asks for the password (or a second-factor code) again when the last sign-in
# is not recent; the form is sent on afterwards.
@reauthentication_required
def api_key_create_view(request: HttpRequest) -> HttpResponse:
    form = ApiKeyCreateForm(request.POST)
    if not form.is_valid():
        return _refused(request, form)
    try:
        # The key and its security log line commit together (the mail goes
        # on commit): a worker stopped right after the commit cannot leave a
        # key nobody was told about.
        with transaction.atomic():
            api_key, secret = api_key_create(
                user=request.user,
                name=form.cleaned_data["name"],
                scopes=form.scope_list(),
                allowed_ips=form.cleaned_data["allowed_ips"],
                expires_in_days=form.cleaned_data["expires_in_days"],
                require_signature=form.cleaned_data["require_signature"],
            )
            api_key_created_notice(request=request, api_key=api_key)
    except ValidationError as error:
        # Errors naming a field go next to it; "too many keys" above the form.
        form.add_error(None, error)
        return _refused(request, form)
    return render(
        request,
        "trading/api_key_created.html",
        {"api_key": api_key, "secret": secret},
    )


def _refused(request: HttpRequest, form: ApiKeyCreateForm) -> HttpResponse:
    """The profile page again, the form as it was sent with its errors beside
    its fields; the section is at the page's end, so the top says where."""
    messages.error(
        request, "The API key was not created: correct the form under “API keys”."
    )
    return profile_render(request, status=400, extra_context={"api_key_form": form})


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def api_key_revoke_view(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks for confirmation; POST revokes."""
    api_key = get_object_or_404(ApiKey, pk=pk, user=request.user)
    if request.method == "GET":
        return render(request, "trading/api_key_revoke.html", {"api_key": api_key})
    # A repeated POST (a double click, the back button) changes nothing and
    # is not logged again; two racing may both see it active and both log.
    was_active = api_key.revoked_at is None
    api_key_revoke(user=request.user, api_key=api_key)
    if was_active:
        api_keys_revoked_notice(request=request, user=request.user, api_keys=[api_key])
        messages.success(request, f"The API key “{api_key.name}” was revoked.")
    else:
        messages.info(request, f"The API key “{api_key.name}” was already revoked.")
    return redirect("accounts:profile")


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def api_keys_revoke_all_view(request: HttpRequest) -> HttpResponse:
    """GET asks for confirmation; POST revokes every active key."""
    active = ApiKey.objects.filter(user=request.user, revoked_at__isnull=True)
    if request.method == "GET":
        return render(
            request, "trading/api_keys_revoke_all.html", {"api_keys": list(active)}
        )
    revoked = list(active)
    count = api_keys_revoke_all(user=request.user)
    if revoked:
        api_keys_revoked_notice(request=request, user=request.user, api_keys=revoked)
    messages.success(
        request, f"{count} API key{'s were' if count != 1 else ' was'} revoked."
    )
    return redirect("accounts:profile")
