from allauth.account.adapter import get_adapter
from allauth.account.forms import LoginForm as AllauthLoginForm
from allauth.core import context
from allauth.mfa.base.forms import AuthenticateForm as MfaAuthenticateForm
from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator

from storage.fields import ProcessedImageFormField
from storage.images import AVATAR


class SignUpForm(UserCreationForm):
    email = forms.EmailField(
        required=False, help_text="Optional. Used only to reset your password."
    )

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ["username", "email"]


class AvatarForm(forms.Form):
    # The whole image pipeline runs in clean(): every refusal (too large, not
    # an image, format not allowed, too many pixels, damaged) is a field error.
    avatar = ProcessedImageFormField(
        spec=AVATAR,
        label="New picture",
        help_text="JPEG, PNG, WebP or GIF. It is cropped to a 300x300 square.",
    )


class AuthenticateForm(MfaAuthenticateForm):
    """allauth's second-factor step at log-in, refused while the account is
    locked: codes count against the account like passwords
    (``account_attempt_count``), so guesses spread over many addresses, each
    under its own limit, stop at the account's."""

    def clean_code(self) -> str:
        attempt = get_adapter(context.request).account_attempt_count(
            context.request, self.user
        )
        try:
            code = super().clean_code()
        except ValidationError as error:
            # Only a wrong code stays counted, not a refusal by allauth's
            # per-address limit.
            if error.code != "incorrect_code":
                attempt.rollback()
            raise
        attempt.rollback()
        return code


# The longest name or address an account can have (an e-mail address).
LOGIN_MAX_LENGTH = 254


class LoginForm(AllauthLoginForm):
    """allauth's log-in form, refusing a name longer than any account's before
    looking it up: SQLite fails a case-insensitive match of a very long one."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        login = self.fields["login"]
        login.validators.append(MaxLengthValidator(LOGIN_MAX_LENGTH))
        login.widget.attrs["maxlength"] = LOGIN_MAX_LENGTH
