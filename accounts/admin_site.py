"""The admin site: the site's own log-in, and a second factor for staff."""

from __future__ import annotations

from functools import wraps

from allauth.account.decorators import secure_admin_login
from allauth.mfa.utils import is_mfa_enabled
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.views.autocomplete import AutocompleteJsonView
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse


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


SELECTION_REFUSED = (
    "The selection names items that do not exist. No items have been changed."
)


def _keys_valid(model, values: list[str]) -> bool:
    """Whether each value could be a primary key of ``model`` (in the
    database's range too), so that the admin can look the rows up."""
    field = model._meta.pk
    bounds = connection.ops.integer_field_ranges.get(field.get_internal_type())
    try:
        keys = [field.to_python(value) for value in values]
    except ValidationError:
        return False
    if bounds is not None:
        return all(key is not None and bounds[0] <= key <= bounds[1] for key in keys)
    return None not in keys


def _selection_checked(changelist_view):
    """Django's changelist filters by the selected rows' keys as sent, so a
    key that is not one (``abc``, or beyond a bigint) raised, building the
    query or in the database: a 500 to a hand-made request. Such a selection
    is refused the way Django refuses an empty one: a warning on the list,
    and nothing changed."""
    model = changelist_view.__self__.model

    @wraps(changelist_view)
    def view(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        selected = request.POST.getlist(ACTION_CHECKBOX_NAME)
        if request.method == "POST" and not _keys_valid(model, selected):
            messages.warning(request, SELECTION_REFUSED)
            return HttpResponseRedirect(request.get_full_path())
        return changelist_view(request, *args, **kwargs)

    return view


class SecureAdminSite(admin.AdminSite):
    site_header = "Crypto Exchange administration"
    site_title = "Crypto Exchange admin"
    index_title = "Exchange data"

    def has_permission(self, request: HttpRequest) -> bool:
        return super().has_permission(request) and is_mfa_enabled(request.user)

    def admin_view(self, view, cacheable=False):
        model_admin = getattr(view, "__self__", None)
        if isinstance(model_admin, admin.ModelAdmin) and (
            view.__name__ == "changelist_view"
        ):
            view = _selection_checked(view)
        return super().admin_view(view, cacheable)

    def autocomplete_view(self, request: HttpRequest) -> HttpResponse:
        return AutocompleteView.as_view(admin_site=self)(request)

    def login(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        """Anonymous visitors go to the site's log-in (throttled, with the
        second factor); staff without a second factor are told to turn it on;
        staff with one go to the index; anyone else signed in is refused.

        Django's own log-in form is never used: posted to by staff already
        signed in, it signed the session in as whoever's password it was
        given, with no second factor, throttle or security log.
        """
        user = request.user
        if user.is_authenticated and user.is_staff and not is_mfa_enabled(user):
            return render(request, "admin/mfa_required.html", status=403)
        return secure_admin_login(self._index_redirect)(request)

    def _index_redirect(self, request: HttpRequest) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:index", current_app=self.name))
