"""The admin site: the site's own log-in, and a second factor for staff."""

from __future__ import annotations

from allauth.account.decorators import secure_admin_login
from allauth.mfa.utils import is_mfa_enabled
from django.contrib import admin
from django.contrib.admin.views.autocomplete import AutocompleteJsonView
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def user_label(user) -> str:
    """A user as staff pick one: the name, and the e-mail address when set."""
    return f"{user.get_username()} <{user.email}>" if user.email else str(user)


class AutocompleteView(AutocompleteJsonView):
    """The admin's autocomplete, naming users with their e-mail address:
    staff search by either and see which account they are about to pick."""

    def serialize_result(self, obj, to_field_name):
        result = super().serialize_result(obj, to_field_name)
        if isinstance(obj, get_user_model()):
            result["text"] = user_label(obj)
        return result


class SecureAdminSite(admin.AdminSite):
    site_header = "Crypto Exchange administration"
    site_title = "Crypto Exchange admin"
    index_title = "Exchange data"

    def has_permission(self, request: HttpRequest) -> bool:
        return super().has_permission(request) and is_mfa_enabled(request.user)

    def autocomplete_view(self, request: HttpRequest) -> HttpResponse:
        return AutocompleteView.as_view(admin_site=self)(request)

    def login(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        """Anonymous visitors go to the site's log-in (throttled, with the
        second factor); staff without a second factor are told to turn it on;
        anyone else signed in is refused."""
        user = request.user
        if user.is_authenticated and user.is_staff and not is_mfa_enabled(user):
            return render(request, "admin/mfa_required.html", status=403)
        return secure_admin_login(super().login)(request, extra_context)
