from __future__ import annotations

from collections.abc import Callable
from functools import partial

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse

from accounts.admin_site import decision_confirmation, decision_rows
from verification.exceptions import VerificationError
from verification.forms import VerificationDecisionForm
from verification.models import IdentityDocumentAccess, IdentityVerification
from verification.services import (
    VIEW_DOCUMENT_PERMISSION,
    verification_approve,
    verification_decision_refusal,
    verification_documents_delete,
    verification_reject,
)
from verification.views import document_staff_view


@admin.register(IdentityVerification)
class IdentityVerificationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "state", "submitted_at", "decided_at", "decided_by"]
    list_select_related = ["user", "decided_by"]
    list_filter = ["state"]
    search_fields = ["user__username", "user__email"]
    # The documents are never a file field here: the admin would render the
    # storage's url(), which in presigned mode signs anything, unrecorded.
    fields = readonly_fields = [
        "user",
        "state",
        "submitted_at",
        "decided_at",
        "decided_by",
        "reason",
        "documents_deleted_at",
    ]
    actions = ["approve", "reject", "delete_documents"]
    change_form_template = "admin/verification/identityverification/change_form.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("verification.change_identityverification")

    def get_urls(self):
        return [
            path(
                "document/<int:pk>/",
                self.admin_site.admin_view(document_staff_view),
                name="verification_document_open",
            ),
            *super().get_urls(),
        ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[IdentityVerification]:
        return super().get_queryset(request).prefetch_related("documents")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        verification = self.get_object(request, object_id)
        documents = list(verification.documents.all()) if verification else []
        extra_context = {
            **(extra_context or {}),
            "identity_documents": [
                (
                    document,
                    reverse("admin:verification_document_open", args=[document.pk]),
                )
                for document in documents
            ],
            "may_open_documents": request.user.has_perm(VIEW_DOCUMENT_PERMISSION),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description="Approve: the documents match", permissions=["decide"])
    def approve(self, request: HttpRequest, queryset) -> HttpResponse | None:
        return self._decide(request, queryset, approve=True)

    @admin.action(
        description="Reject (with a reason); deletes the documents",
        permissions=["decide"],
    )
    def reject(self, request: HttpRequest, queryset) -> HttpResponse | None:
        return self._decide(request, queryset, approve=False)

    @admin.action(
        description="Delete the documents (the decision is kept)",
        permissions=["decide"],
    )
    def delete_documents(self, request: HttpRequest, queryset) -> HttpResponse | None:
        """Ask to confirm, then delete the documents of the selected approved
        verifications, each recorded in its history; they stay approved."""
        if request.POST.get("post") == "yes":
            self._each(
                request,
                decision_rows(request, queryset),
                partial(verification_documents_delete, staff=request.user),
                done_message="Deleted the documents; the decision is kept.",
                summary="Deleted the documents of {done}.",
            )
            return None
        return self._confirmation(
            request,
            queryset,
            action="delete_documents",
            title="Delete the documents of approved verifications",
            template="documents_delete_confirmation.html",
        )

    def _decide(
        self, request: HttpRequest, queryset, *, approve: bool
    ) -> HttpResponse | None:
        """Show the selected submissions and ask to confirm (and, to reject,
        for the reason); the confirmation posts the action again with
        ``post=yes``, as Django's "delete selected" does."""
        confirmed = request.POST.get("post") == "yes"
        if confirmed:
            queryset = decision_rows(request, queryset)
        form = VerificationDecisionForm(
            request.POST if confirmed else None, approve=approve
        )
        if confirmed and form.is_valid():
            word = "approved" if approve else "rejected"
            if approve:
                decide = partial(verification_approve, staff=request.user)
            else:
                decide = partial(
                    verification_reject,
                    staff=request.user,
                    reason=form.cleaned_data["reason"],
                )
            self._each(
                request,
                queryset,
                decide,
                done_message=word,
                summary=f"{{done}} {word}.",
            )
            return None
        return self._confirmation(
            request,
            queryset,
            action="approve" if approve else "reject",
            title="Approve verifications" if approve else "Reject verifications",
            template="decide_confirmation.html",
            approve=approve,
            form=form,
        )

    def _each(
        self,
        request: HttpRequest,
        queryset,
        change: Callable[..., IdentityVerification],
        *,
        done_message: str,
        summary: str,
    ) -> None:
        """``change`` each verification, recording each in its history; one
        the rules refuse (already decided, one's own) is skipped, named in an
        error message."""
        done = 0
        for verification in queryset.select_related("user").order_by("pk"):
            try:
                change(verification=verification)
            except VerificationError as error:
                self.message_user(
                    request, f"{verification}: {error.message}", messages.ERROR
                )
            else:
                self.log_change(request, verification, done_message)
                done += 1
        if done:
            self.message_user(request, summary.format(done=done), messages.SUCCESS)

    def _confirmation(
        self,
        request: HttpRequest,
        queryset,
        *,
        action: str,
        title: str,
        template: str,
        **extra,
    ) -> TemplateResponse:
        """The page asking to confirm ``action`` on the selected rows; each row
        ``request.user`` may not act on says why it will be skipped."""
        selection = decision_confirmation(request, queryset.select_related("user"))
        objects = list(selection.pop("objects"))
        for verification in objects:
            verification.refusal = verification_decision_refusal(
                verification=verification, staff=request.user
            )
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "action": action,
            **selection,
            "objects": objects,
            "form": None,
            "media": self.media,
            **extra,
        }
        return TemplateResponse(
            request,
            f"admin/verification/identityverification/{template}",
            context,
        )


@admin.register(IdentityDocumentAccess)
class IdentityDocumentAccessAdmin(admin.ModelAdmin):
    list_display = [
        "accessed_at",
        "staff_username",
        "document_description",
        "delivery",
        "ip_address",
    ]
    list_filter = ["delivery"]
    search_fields = ["staff_username", "document_description", "object_key"]
    fields = readonly_fields = [
        "accessed_at",
        "staff_username",
        "document_description",
        "object_key",
        "delivery",
        "ip_address",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
