from __future__ import annotations

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
    ]
    actions = ["approve", "reject"]
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
            done = 0
            for verification in queryset.order_by("pk"):
                try:
                    if approve:
                        verification_approve(
                            verification=verification, staff=request.user
                        )
                    else:
                        verification_reject(
                            verification=verification,
                            staff=request.user,
                            reason=form.cleaned_data["reason"],
                        )
                except VerificationError as error:
                    self.message_user(
                        request, f"{verification}: {error.message}", messages.ERROR
                    )
                else:
                    self.log_change(
                        request, verification, "approved" if approve else "rejected"
                    )
                    done += 1
            if done:
                word = "approved" if approve else "rejected"
                self.message_user(request, f"{done} {word}.", messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Approve verifications" if approve else "Reject verifications",
            "opts": self.opts,
            "action": "approve" if approve else "reject",
            "approve": approve,
            **decision_confirmation(request, queryset.select_related("user")),
            "form": form,
            "media": self.media,
        }
        return TemplateResponse(
            request,
            "admin/verification/identityverification/decide_confirmation.html",
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
