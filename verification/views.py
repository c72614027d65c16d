from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import cache_control, never_cache
from django.views.decorators.http import require_http_methods, require_safe

from storage.exceptions import ImageDecodersBusy, StorageFull, StorageUnavailable
from verification.exceptions import VerificationError
from verification.forms import IdentityDocumentsForm
from verification.models import IdentityDocument
from verification.selectors import verification_can_submit, verification_latest
from verification.services import document_open, verification_submit

DOCUMENT_POLICY = (
    "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'"
)
STORAGE_DOWN_MESSAGE = (
    "Your documents could not be saved because file storage is unavailable "
    "right now. Nothing was changed; please try again in a few minutes."
)
STORAGE_FULL_MESSAGE = (
    "Your documents could not be saved: the server's disk is full. Nothing was "
    "changed; please try again later."
)


@login_required
@require_http_methods(["GET", "POST"])
@cache_control(private=True, no_store=True)
def verification_page(request: HttpRequest) -> HttpResponse:
    """The user's verification state; while they may submit, the upload form."""
    latest = verification_latest(user=request.user)
    can_submit = verification_can_submit(latest=latest)
    form = IdentityDocumentsForm()
    status = 200
    if request.method == "POST" and can_submit:
        form = IdentityDocumentsForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                verification_submit(user=request.user, documents=form.documents())
            except VerificationError as error:
                form.add_error(None, error.message)
            except StorageFull:
                form.add_error(None, STORAGE_FULL_MESSAGE)
            except StorageUnavailable:
                form.add_error(None, STORAGE_DOWN_MESSAGE)
            else:
                messages.success(
                    request, "Thank you: your documents were sent for review."
                )
                return redirect("verification:page")
        status = 400
    busy = any(form.has_error(name, ImageDecodersBusy.code) for name in form.fields)
    response = render(
        request,
        "verification/verification.html",
        {"verification": latest, "can_submit": can_submit, "form": form},
        status=503 if busy else status,
    )
    if busy:
        response["Retry-After"] = str(ImageDecodersBusy.retry_after)
    return response


@require_safe
@never_cache
def document_staff_view(request: HttpRequest, pk: int) -> HttpResponse:
    """Staff only (mounted in the admin): record the opening, then redirect to
    a short-lived presigned URL or stream the file. A file missing from
    storage gets a page saying so, and no opening is recorded."""
    document = get_object_or_404(
        IdentityDocument.objects.select_related("verification__user"), pk=pk
    )
    try:
        delivery = document_open(request=request, document=document)
    except FileNotFoundError:
        return render(
            request,
            "verification/document_missing.html",
            {"document": document},
            status=404,
        )
    except StorageUnavailable:
        return HttpResponse(
            "File storage is unavailable.", status=503, content_type="text/plain"
        )
    if delivery.presigned_url:
        response = redirect(delivery.presigned_url)
    else:
        content = delivery.content
        response = FileResponse(
            content,
            content_type=document.content_type,
            as_attachment=document.content_type == "application/pdf",
            filename=document.file.name.rsplit("/", 1)[-1],
        )
        response["Content-Length"] = str(content.size)
        response["X-Content-Type-Options"] = "nosniff"
        # The browser shows an image in a page of its own that styles it
        # inline; nothing in it may run or load anything else.
        response["Content-Security-Policy"] = DOCUMENT_POLICY
    response["Cache-Control"] = "private, no-store"
    return response
