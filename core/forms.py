"""Form helpers shared by the apps' admin pages."""

from __future__ import annotations

from django import forms

from core.widgets import PlainHiddenInput


def changes_against_opened_page(form: forms.BaseForm) -> None:
    """Make ``form.changed_data`` compare what is posted with the values the
    page was opened with, not with the row as it is now: a page opened
    before another staff member's save then writes back none of that
    member's values, only what was edited on it.

    The page carries those values as hidden ``initial-<name>`` inputs
    (Django's ``show_hidden_initial``), kept when the form is shown again
    with errors. A file field is left out: it has changed only if it gets a
    file or its "Clear" box is ticked, whatever the page was opened with.
    """
    for field in form.fields.values():
        # A disabled field is never posted, so never changed, and its value
        # must not be on the page (the user form's password hash).
        if isinstance(field, forms.FileField) or field.disabled:
            continue
        field.show_hidden_initial = True
        if isinstance(field, forms.DecimalField):
            field.hidden_widget = PlainHiddenInput
