from allauth.account.admin import EmailAddressAdmin
from allauth.account.models import EmailAddress
from allauth.mfa import signals as mfa_signals
from allauth.mfa.admin import AuthenticatorAdmin
from allauth.mfa.base.internal.flows import delete_dangling_recovery_codes
from allauth.mfa.models import Authenticator
from allauth.usersessions.adapter import get_adapter as get_usersessions_adapter
from allauth.usersessions.admin import UserSessionAdmin
from allauth.usersessions.models import UserSession
from django import forms
from django.contrib import admin, messages
from django.contrib.admin import actions as admin_actions
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import Group
from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError, Q, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from accounts.models import Profile, SecurityEvent
from accounts.services import account_notify, avatar_replace
from core.forms import ChangesOnPageForm
from core.locks import unique_value_serialize
from storage.html import image_tag

User = get_user_model()


def _profile_changes_save(*, profile: Profile, form: forms.ModelForm) -> None:
    """Save what ``form`` changed on the profile, and only that: its user may
    have replaced the picture since the page's row was read. A new picture
    is stored as the profile page stores one (``avatar_replace``), which
    deletes, after commit, the picture the row held then."""
    if "avatar" in form.changed_data:
        avatar_replace(profile=profile, upload=form.cleaned_data["avatar"])
    fields = [name for name in form.changed_data if name != "avatar"]
    if fields:
        profile.save(update_fields=[*fields, "updated_at"])


class ProfileForm(ChangesOnPageForm):
    def clean_user(self):
        user = self.cleaned_data.get("user")
        if user is not None and self.instance._state.adding:
            # One profile per user: of two staff adding one for the same user
            # at once, the second waits here for the first's commit and gets
            # the usual "already exists" error.
            unique_value_serialize(model=Profile, user=user.pk)
        return user


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    form = ProfileForm
    list_display = ["avatar_thumbnail", "user", "updated_at"]
    list_select_related = ["user"]
    search_fields = ["user__username", "user__email"]
    readonly_fields = ["avatar_preview", "updated_at"]
    fields = ["user", "avatar_preview", "avatar", "updated_at"]
    raw_id_fields = ["user"]

    def save_model(self, request, obj, form, change) -> None:
        if change:
            _profile_changes_save(profile=obj, form=form)
        else:
            super().save_model(request, obj, form, change)

    @admin.display(description="Avatar")
    def avatar_thumbnail(self, profile: Profile) -> str:
        return image_tag(profile.avatar.url, alt=f"Avatar of {profile.user}", size=32)

    @admin.display(description="Current avatar")
    def avatar_preview(self, profile: Profile) -> str:
        return image_tag(profile.avatar.url, alt=f"Avatar of {profile.user}", size=100)


class ProfileInlineFormSet(BaseInlineFormSet):
    def save_existing(self, form, obj, commit=True):
        if not commit:
            return super().save_existing(form, obj, commit=commit)
        _profile_changes_save(profile=obj, form=form)
        return obj


class ProfileInline(admin.StackedInline):
    model = Profile
    formset = ProfileInlineFormSet
    can_delete = False
    fields = ["avatar_preview", "avatar"]
    readonly_fields = ["avatar_preview"]

    @admin.display(description="Current avatar")
    def avatar_preview(self, profile: Profile) -> str:
        return image_tag(profile.avatar.url, alt=f"Avatar of {profile.user}", size=100)


class UserAddForm(AdminUserCreationForm):
    def clean_username(self):
        username = self.cleaned_data.get("username")
        if username:
            # Before the checks that the name is free (in any case): of two
            # staff adding one name at once, the second waits here for the
            # first's commit and gets the usual "already exists" error.
            unique_value_serialize(model=User, username=username.upper())
        return super().clean_username()


class UserChangeOnPageForm(ChangesOnPageForm, UserChangeForm):
    """Django's, comparing what is posted with the values the page was
    opened with (``ChangesOnPageForm``): a page opened before another staff
    member suspended the user, or took away a group or staff status, saves
    none of that back."""


def _many_changes_save(*, form: forms.ModelForm, name: str) -> None:
    """Add and remove, of the many-to-many field ``name``, what was added and
    removed on the page, as it posts back the choices it was opened with:
    another staff member may have changed them since."""
    bound = form[name]
    opened = bound.field.hidden_widget().value_from_datadict(
        form.data, form.files, bound.html_initial_name
    )
    opened = {str(pk) for pk in opened or []}
    chosen = {str(obj.pk): obj for obj in form.cleaned_data[name]}
    related = getattr(form.instance, name)
    related.remove(
        *[obj for obj in related.all() if str(obj.pk) in opened - chosen.keys()]
    )
    related.add(*[obj for pk, obj in chosen.items() if pk not in opened])


# What a user may do in the admin: granted by superusers only, so that staff
# who may change users (or groups) cannot give themselves, or anyone, more.
PERMISSION_FIELDS = ["is_superuser", "is_staff", "groups", "user_permissions"]

admin.site.unregister(User)


USER_KEPT_MESSAGE = (
    "Cannot delete this user: a deposit, an order or another record that must "
    "be kept was added for them while you were confirming. Nothing was deleted."
)
USERS_KEPT_MESSAGE = (
    "Cannot delete the selected users: a deposit, an order or another record "
    "that must be kept was added for one of them while you were confirming. "
    "Nothing was deleted."
)


def _deleted_users_unreferenced() -> None:
    """Raise ``IntegrityError`` now if a row still refers to a user just
    deleted. PostgreSQL checks the foreign keys at commit (Django makes them
    deferred): a deposit committed after Django's delete looked for rows that
    keep the user would fail only the commit, once the admin had said the
    user was deleted."""
    if connection.vendor == "postgresql":
        connection.check_constraints()


def _other_staff(request: HttpRequest, user) -> bool:
    """Whether ``user`` is another staff member or a superuser, whom staff who
    are not superusers may only view: setting their password, address or
    status would give those staff the other's permissions."""
    return (
        user is not None
        and not request.user.is_superuser
        and (user.is_staff or user.is_superuser)
        and user.pk != request.user.pk
    )


@admin.register(User)
class UserWithAvatarAdmin(UserAdmin):
    add_form = UserAddForm
    form = UserChangeOnPageForm
    inlines = [ProfileInline]
    actions = ["delete_selected"]
    list_display = ["avatar_thumbnail", *UserAdmin.list_display]
    list_display_links = ["avatar_thumbnail", "username"]
    list_select_related = ["profile"]

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        readonly = super().get_readonly_fields(request, obj)
        if request.user.is_superuser:
            return readonly
        return [*readonly, *PERMISSION_FIELDS]

    def save_model(self, request: HttpRequest, obj, form, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            return
        # Only what this staff member changed on the page: another may have
        # suspended the user since it was opened. Groups and permissions are
        # saved by save_related.
        many = {field.name for field in obj._meta.many_to_many}
        obj.save(update_fields=[n for n in form.changed_data if n not in many])

    def save_related(self, request: HttpRequest, form, formsets, change: bool):
        if not change:
            super().save_related(request, form, formsets, change)
            return
        # Not form.save_m2m(): it sets every group and permission the page
        # shows, undoing what another staff member changed since.
        for field in form.instance._meta.many_to_many:
            if field.name in form.changed_data:
                _many_changes_save(form=form, name=field.name)
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # Also the password page's check (UserAdmin.user_change_password).
        return super().has_change_permission(request, obj) and not _other_staff(
            request, obj
        )

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and not _other_staff(
            request, obj
        )

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context=None
    ) -> HttpResponse:
        """Django's. A row that keeps the user (a deposit credited, an order
        placed) can be written after the view checked for such rows and
        before the user is deleted: the delete then raises
        (``ProtectedError``, or ``IntegrityError`` from
        ``_deleted_users_unreferenced``) and nothing is deleted. Staff get the
        usual "Cannot delete" page, naming what keeps the user, instead of a
        server error."""
        try:
            return super().delete_view(request, object_id, extra_context)
        except (ProtectedError, IntegrityError):
            self.message_user(request, USER_KEPT_MESSAGE, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_model(self, request: HttpRequest, obj) -> None:
        super().delete_model(request, obj)
        _deleted_users_unreferenced()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        super().delete_queryset(request, queryset)
        _deleted_users_unreferenced()

    @admin.action(
        description=admin_actions.delete_selected.short_description,
        permissions=["delete"],
    )
    def delete_selected(self, request: HttpRequest, queryset: QuerySet):
        """Django's action, with the race of ``delete_view``: the history's
        entries are rolled back with the deletion, and staff told."""
        try:
            with transaction.atomic():
                return admin_actions.delete_selected(self, request, queryset)
        except (ProtectedError, IntegrityError):
            self.message_user(request, USERS_KEPT_MESSAGE, messages.ERROR)
            return None

    def get_inlines(self, request: HttpRequest, obj=None):
        # A new user's profile is created when the user is saved
        # (profile_create_for_new_user), before the inline would insert a
        # second one; the avatar is chosen once the user exists.
        return self.inlines if obj is not None else []

    @admin.display(description="Avatar")
    def avatar_thumbnail(self, user) -> str:
        try:
            url = user.profile.avatar.url
        except Profile.DoesNotExist:
            return "—"
        return image_tag(url, alt=f"Avatar of {user}", size=32)


admin.site.unregister(Group)


@admin.register(Group)
class SuperuserGroupAdmin(GroupAdmin):
    """Django's, with groups made and their permissions chosen by superusers
    only: staff who may change groups would otherwise grant themselves any
    permission through a group they are in."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.is_superuser


admin.site.unregister(EmailAddress)


@admin.register(EmailAddress)
class EmailAddressWithLogAdmin(EmailAddressAdmin):
    """allauth's, whose "mark verified" action asks for the permission to
    change addresses (allauth's asks for none, so that staff who could only
    view them verified them: a verified address is what trading and
    withdrawing need) and records each address it verifies in the admin's
    history."""

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # Another staff member's address, changed, would receive their
        # password reset (accounts.admin._other_staff).
        return super().has_change_permission(request, obj) and not (
            obj is not None and _other_staff(request, obj.user)
        )

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and not (
            obj is not None and _other_staff(request, obj.user)
        )

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs):
        if db_field.name == "user" and not request.user.is_superuser:
            kwargs["queryset"] = User.objects.exclude(
                Q(is_staff=True) | Q(is_superuser=True), ~Q(pk=request.user.pk)
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.action(
        description=EmailAddressAdmin.make_verified.short_description,
        permissions=["change"],
    )
    def make_verified(self, request: HttpRequest, queryset: QuerySet) -> None:
        if not request.user.is_superuser:
            others = queryset.filter(
                Q(user__is_staff=True) | Q(user__is_superuser=True),
                ~Q(user=request.user),
            )
            for address in others:
                self.message_user(
                    request,
                    f"{address.email} is another staff member's: only a "
                    "superuser verifies it.",
                    level=messages.ERROR,
                )
            queryset = queryset.exclude(pk__in=others.values("pk"))
        pending = list(queryset.filter(verified=False).values_list("pk", flat=True))
        super().make_verified(request, queryset)
        for address in EmailAddress.objects.filter(pk__in=pending, verified=True):
            self.log_change(request, address, [{"changed": {"fields": ["Verified"]}}])


admin.site.unregister(UserSession)


@admin.register(UserSession)
class UserSessionEndingAdmin(UserSessionAdmin):
    """allauth's, read-only: deleting a row ends the session, as ending it
    from the user's profile does (the usersessions adapter: the user is
    signed out there, and the user's security log says so). allauth's
    deleted only the row, which the next request of the still signed-in
    browser made again."""

    fields = readonly_fields = [
        "user",
        "ip",
        "user_agent",
        "created_at",
        "last_seen_at",
    ]

    def delete_model(self, request: HttpRequest, obj: UserSession) -> None:
        get_usersessions_adapter().end_sessions([obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        get_usersessions_adapter().end_sessions(queryset.select_related("user"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(SecurityEvent)
class SecurityEventAdmin(admin.ModelAdmin):
    """The security log: read-only, filtered by kind and date, searched by
    user, address or browser."""

    list_display = ["created_at", "user", "kind", "ip_address", "detail"]
    list_select_related = ["user"]
    list_filter = ["kind", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["user__username", "user__email", "ip_address", "user_agent"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "user",
        "kind",
        "ip_address",
        "user_agent",
        "detail",
        "created_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


def _authenticator_remove(
    *, request: HttpRequest, authenticator: Authenticator
) -> None:
    """Remove a user's second factor as turning it off on the user's own page
    does (allauth's ``delete_and_cleanup``, ``deactivate_totp``): the recovery
    codes go with the last real authenticator, so that the password confirms
    who the user is again and turning 2FA on again makes new codes; then
    ``authenticator_removed`` (the security log naming the staff member, the
    user's sessions ended: accounts.signals) and, for the app, the user's
    notice mail."""
    user = authenticator.user
    with transaction.atomic():
        deleted, _ = authenticator.delete()
        if not deleted:  # removed meanwhile, by the user or other staff
            return
        recovery_codes = delete_dangling_recovery_codes(user)
        for removed in filter(None, [authenticator, recovery_codes]):
            mfa_signals.authenticator_removed.send(
                sender=Authenticator, request=request, user=user, authenticator=removed
            )
        if authenticator.type == Authenticator.Type.TOTP:
            account_notify(
                request=request,
                user=user,
                template="mfa/email/totp_deactivated",
                context={"by_staff": True},  # not staff's address and browser
            )


admin.site.unregister(Authenticator)


@admin.register(Authenticator)
class AuthenticatorWithoutSecretsAdmin(AuthenticatorAdmin):
    """allauth's, without ``data``: it holds the authenticator app's secret
    and the recovery codes' seed, from which anyone could compute the
    user's codes. Staff see who has which second factor and may delete one
    (a user who lost the phone turns it on again), as the user turns it off
    (``_authenticator_remove``); nobody adds or edits one here."""

    fields = readonly_fields = ["user", "type", "created_at", "last_used_at"]

    def delete_model(self, request: HttpRequest, obj: Authenticator) -> None:
        _authenticator_remove(request=request, authenticator=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for authenticator in queryset.select_related("user"):
            _authenticator_remove(request=request, authenticator=authenticator)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        # Another staff member's second factor: removed, their account would
        # be one password reset away (accounts.admin._other_staff).
        return super().has_delete_permission(request, obj) and not (
            obj is not None and _other_staff(request, obj.user)
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
