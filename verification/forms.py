from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from storage.exceptions import ImageDecodersBusy
from verification.documents import (
    ACCEPTED_CONTENT_TYPES,
    ProcessedDocument,
    document_process,
)


class IdentityDocumentField(forms.FileField):
    """Checks and cleans the upload in ``clean``, so a refusal shows on the field."""

    def to_python(self, data: Any) -> ProcessedDocument | None:
        upload = super().to_python(data)
        if upload is None:
            return None
        try:
            return document_process(upload)
        except ImageDecodersBusy as busy:
            raise ValidationError(str(busy), code=busy.code) from None

    def widget_attrs(self, widget: forms.Widget) -> dict[str, Any]:
        attrs = super().widget_attrs(widget)
        if isinstance(widget, forms.FileInput):
            attrs["accept"] = ACCEPTED_CONTENT_TYPES
        return attrs


def _help(extra: str = "") -> str:
    limit = settings.IDENTITY_DOCUMENT_MAX_SIZE / (1024 * 1024)
    size = f"{limit:.1f}".removesuffix(".0")
    return f"JPEG, PNG or PDF, at most {size} MB.{extra}"


class IdentityDocumentsForm(forms.Form):
    front = IdentityDocumentField(label="Front of your ID document")
    back = IdentityDocumentField(label="Back of your ID document", required=False)
    selfie = IdentityDocumentField(label="A selfie holding the document")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["front"].help_text = _help(" The side with your photo.")
        self.fields["back"].help_text = _help(" Not needed for a passport.")
        self.fields["selfie"].help_text = _help(" Your face and the document.")

    def documents(self) -> dict[str, ProcessedDocument]:
        return {kind: doc for kind, doc in self.cleaned_data.items() if doc}


class VerificationDecisionForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=500,
        help_text="Shown to the user on the verification page.",
    )

    def __init__(self, *args: Any, approve: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if approve:
            del self.fields["reason"]

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise ValidationError("Say why, for the user.")
        return reason
