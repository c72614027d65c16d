"""The admin site: the site's own log-in, and a second factor for staff."""

from __future__ import annotations

from functools import cache, wraps

from allauth.account.decorators import secure_admin_login
from allauth.mfa.utils import is_mfa_enabled
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.autocomplete import AutocompleteJsonView
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import DataError, connection, transaction
from django.db.models import Max, QuerySet
from django.db.models.constants import LOOKUP_SEP
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


# Hand-typed in a list's address, a pattern the database cannot compile is an
# error there, and one Python's ``re`` backtracks on (SQLite) holds a worker.
# No list filter makes one.
_REFUSED_LOOKUPS = {"regex", "iregex"}


class _LookupsCheckedChangeList:
    """A changelist whose filters typed into its address send Django's
    "invalid lookup" answer, a redirect to the list with ``?e=1``.

    Django refuses a filter it cannot build, but accepts any lookup on a
    field and only compiles and runs it when counting the rows: a value out of
    the lookup's range (``created_at__year=10000``, ``decimals__range=1``,
    ``ip_address=abc``) raised there (a date hierarchy's year or month too
    large for a date, in Django's own filter), and on PostgreSQL a value the database
    refuses (a DataError) too. The count is made in a savepoint, so that the
    refusal leaves an enclosing transaction usable."""

    def get_filters(self, request):
        try:
            filters = super().get_filters(request)
        except OverflowError as e:  # a date hierarchy's year=9999999999
            raise IncorrectLookupParameters(e) from e
        for key in filters[2]:  # the lookups no list filter handled
            if key.rsplit(LOOKUP_SEP, 1)[-1] in _REFUSED_LOOKUPS:
                raise IncorrectLookupParameters(f"{key} is not a list filter")
        return filters

    def get_results(self, request):
        if not self.get_filters_params():
            return super().get_results(request)
        try:
            with transaction.atomic(using=self.queryset.db):
                return super().get_results(request)
        except (DataError, ValueError, TypeError, OverflowError, ValidationError) as e:
            raise IncorrectLookupParameters(e) from e


@cache
def _lookups_checked_changelist(changelist_class: type) -> type:
    return type(
        changelist_class.__name__, (_LookupsCheckedChangeList, changelist_class), {}
    )


class _LookupsCheckedAdmin:
    def get_changelist(self, request, **kwargs):
        return _lookups_checked_changelist(super().get_changelist(request, **kwargs))


@cache
def _lookups_checked(admin_class: type[admin.ModelAdmin]) -> type[admin.ModelAdmin]:
    """``admin_class`` with its changelist checking the filters typed into its
    address; the site registers every model admin so, the apps' own and
    those of the packages (auth, allauth) alike."""
    if issubclass(admin_class, _LookupsCheckedAdmin):
        return admin_class
    return type(
        admin_class.__name__,
        (_LookupsCheckedAdmin, admin_class),
        {"__doc__": admin_class.__doc__},
    )


SELECTED_THROUGH = "selected_through"
DECISION_ROWS_SHOWN = 100


def _select_across(request: HttpRequest) -> bool:
    return forms.BooleanField(required=False).to_python(
        request.POST.get("select_across")
    )


def decision_confirmation(request: HttpRequest, queryset: QuerySet) -> dict:
    """What the confirmation page of an action on ``queryset`` shows and posts
    back (``admin/decide_confirmation.html``): its first rows, their number,
    and the selection. Rows ticked one by one are posted back by key, as they
    came; "select all" is posted back as such, the changelist's filters
    staying in the page's address, with the newest row's key: a few fields
    however many rows, where one per row made confirming more than
    ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` a 400 that lost the reason typed."""
    queryset = queryset.order_by("pk")
    count = queryset.count()
    context = {
        "objects": queryset[:DECISION_ROWS_SHOWN],
        "selected_count": count,
        "more_count": max(0, count - DECISION_ROWS_SHOWN),
        "action_checkbox_name": ACTION_CHECKBOX_NAME,
        "select_across": _select_across(request),
    }
    if context["select_across"]:
        context[SELECTED_THROUGH] = queryset.aggregate(newest=Max("pk"))["newest"]
    else:
        context["selected_keys"] = list(queryset.values_list("pk", flat=True))
    return context


def decision_rows(request: HttpRequest, queryset: QuerySet) -> QuerySet:
    """The rows a confirmed action applies to. Of "select all", the rows of
    the changelist's filters up to the newest one the confirmation page
    counted (keys grow with time), so that a row added since, which staff
    have not seen, is not decided with the others."""
    if not _select_across(request):
        return queryset
    through = request.POST.get(SELECTED_THROUGH, "")
    if not _keys_valid(queryset.model, [through]):
        return queryset.none()
    return queryset.filter(pk__lte=through)


class SecureAdminSite(admin.AdminSite):
    site_header = "Crypto Exchange administration"
    site_title = "Crypto Exchange admin"
    index_title = "Exchange data"

    def has_permission(self, request: HttpRequest) -> bool:
        return super().has_permission(request) and is_mfa_enabled(request.user)

    def register(self, model_or_iterable, admin_class=None, **options):
        admin_class = _lookups_checked(admin_class or admin.ModelAdmin)
        super().register(model_or_iterable, admin_class, **options)

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
