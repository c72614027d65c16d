"""The admin site: the site's own log-in, and a second factor for staff."""

from __future__ import annotations

from allauth.account.decorators import secure_admin_login
from allauth.mfa.utils import is_mfa_enabled
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


class SecureAdminSite(admin.AdminSite):
    site_header = "Crypto Exchange administration"
    site_title = "Crypto Exchange admin"
    index_title = "Exchange data"

    def has_permission(self, request: HttpRequest) -> bool:
        return super().has_permission(request) and is_mfa_enabled(request.user)

    def login(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        """Anonymous visitors go to the site's log-in (throttled, with the
        second factor); staff without a second factor are told to turn it on;
        anyone else signed in is refused."""
        user = request.user
        if user.is_authenticated and user.is_staff and not is_mfa_enabled(user):
            return render(request, "admin/mfa_required.html", status=403)
        return secure_admin_login(super().login)(request, extra_context)
