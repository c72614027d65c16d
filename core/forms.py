"""Form helpers shared by the apps' admin pages."""

from __future__ import annotations

from django import forms
from django.core.exceptions import FieldDoesNotExist

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


class ChangesOnPageForm(forms.ModelForm):
    """A model form of an admin page that, on a change page, changes only
    what was changed on the page (``changes_against_opened_page``).

    Its other fields are cleaned as the row is now, not as the page showed
    it: what is checked (unique together, the form's and the model's rules
    across fields) is the row this save makes, another staff member's save
    since the page was opened included. The admin's ``save_model`` writes
    ``changed_data`` alone."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.instance._state.adding:
            changes_against_opened_page(self)

    def clean(self):
        data = super().clean()
        if self.instance._state.adding:
            return data
        changed = set(self.changed_data)
        for name, field in self.fields.items():
            if name in changed or name not in data or not field.show_hidden_initial:
                continue
            try:
                model_field = self.instance._meta.get_field(name)
            except FieldDoesNotExist:
                continue  # a field of the form alone
            if model_field.concrete and not model_field.many_to_many:
                data[name] = getattr(self.instance, model_field.name)
        return data
