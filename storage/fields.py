"""A file field that stores only images processed by `storage.images`.

Processing happens in `FieldFile.save`, the one method through which forms, the
admin, the shell (`obj.avatar = File(f); obj.save()` or `obj.avatar.save(...)`)
and scripts all pass before anything reaches the storage, whichever it is.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.files.base import File
from django.db import models
from django.db.models.fields.files import FieldFile

from storage.exceptions import ImageDecodersBusy
from storage.images import (
    ACCEPTED_CONTENT_TYPES,
    ImageSpec,
    ProcessedImage,
    image_filename,
    image_process,
)


class ProcessedImageFieldFile(FieldFile):
    field: ProcessedImageField

    def save(self, name: str | None, content: File, save: bool = True) -> None:
        spec = self.field.spec
        if isinstance(content, ProcessedImage) and content.spec == spec:
            processed = content
            name = image_filename(name or content.name, extension=content.extension)
        else:
            processed = image_process(content, spec=spec, name=name)
            name = processed.name
        super().save(name, processed, save=save)

    save.alters_data = True  # type: ignore[attr-defined]


class ProcessedImageFormField(forms.FileField):
    """Runs the whole pipeline in `clean`, so every refusal shows on the field."""

    def __init__(self, *, spec: ImageSpec, **kwargs: Any) -> None:
        self.spec = spec
        super().__init__(**kwargs)

    def to_python(self, data: Any) -> ProcessedImage | None:
        if data in self.empty_values:
            return None
        try:
            file_name, file_size = data.name, data.size
        except AttributeError:
            raise ValidationError(
                self.error_messages["invalid"], code="invalid"
            ) from None
        if not file_name:
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        if not self.allow_empty_file and not file_size:
            raise ValidationError(self.error_messages["empty"], code="empty")
        try:
            processed = image_process(data, spec=self.spec)
        except ImageDecodersBusy as busy:
            # Shown on the field like any refusal (the admin shows it so);
            # the upload views answer this code with 503 and Retry-After.
            raise ValidationError(str(busy), code=busy.code) from None
        # Checked on the stored name: the uploaded one is replaced and may be long.
        if self.max_length is not None and len(processed.name) > self.max_length:
            raise ValidationError(
                self.error_messages["max_length"],
                code="max_length",
                params={"max": self.max_length, "length": len(processed.name)},
            )
        return processed

    def widget_attrs(self, widget: forms.Widget) -> dict[str, Any]:
        attrs = super().widget_attrs(widget)
        if isinstance(widget, forms.FileInput) and "accept" not in widget.attrs:
            attrs["accept"] = ACCEPTED_CONTENT_TYPES
        return attrs


class ProcessedImageField(models.FileField):
    """A FileField whose files are square, metadata-free JPEG or PNG images."""

    attr_class = ProcessedImageFieldFile

    def __init__(
        self,
        verbose_name: str | None = None,
        name: str | None = None,
        *,
        size: int,
        keep_alpha: bool = False,
        **kwargs: Any,
    ) -> None:
        self.spec = ImageSpec(size=size, keep_alpha=keep_alpha)
        super().__init__(verbose_name, name, **kwargs)

    def deconstruct(self) -> tuple[str, str, list[Any], dict[str, Any]]:
        name, path, args, kwargs = super().deconstruct()
        kwargs["size"] = self.spec.size
        kwargs["keep_alpha"] = self.spec.keep_alpha
        return name, path, args, kwargs

    def formfield(self, **kwargs: Any) -> forms.Field | None:
        return super().formfield(
            **{"form_class": ProcessedImageFormField, "spec": self.spec, **kwargs}
        )
