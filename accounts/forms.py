from allauth.account import app_settings as allauth_account_settings
from allauth.account.adapter import get_adapter
from allauth.account.forms import AddEmailForm as AllauthAddEmailForm
from allauth.account.forms import LoginForm as AllauthLoginForm
from allauth.account.forms import ResetPasswordForm as AllauthResetPasswordForm
from allauth.account.forms import SignupForm as AllauthSignupForm
from allauth.account.models import EmailAddress
from allauth.core import context
from allauth.core.internal import ratelimit
from allauth.mfa.base.forms import AuthenticateForm as MfaAuthenticateForm
from allauth.mfa.base.forms import ReauthenticateForm as MfaReauthenticateForm
from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.db import IntegrityError

from accounts.adapter import mail_lost_to
from core.locks import unique_value_serialize
from storage.fields import ProcessedImageFormField
from storage.images import AVATAR

User = get_user_model()


class SignupForm(AllauthSignupForm):
    """allauth's sign-up form, claiming the name and the address before
    checking that they are free.

    Checking and inserting are separate statements: two visitors signing up
    as "carol" (or "Carol", or with one address) at once would both find it
    free, and the second insert fail (a server error) or make a second
    account. With the claim taken first, the second waits for the first
    account to be committed, then finds it and gets allauth's usual error.
    The claims hold until the transaction ends, so the form is checked and
    saved in one (``accounts.views.SignupView``), before any mail is sent.
    """

    def clean_username(self) -> str:
        username = self.cleaned_data.get("username")
        if username:
            # The key the admin's user form claims too (accounts.admin): upper
            # case, as PostgreSQL's case-insensitive match compares ("al\u0131ce"
            # is "ALICE" to it; casefold() would keep the dotless i).
            unique_value_serialize(model=User, username=username.upper())
        return super().clean_username()

    def clean_email(self) -> str:
        email = self.cleaned_data.get("email")
        if email:
            unique_value_serialize(model=EmailAddress, email=email.upper())
        return super().clean_email()

    def try_save(self, request):
        """allauth's, once: the view saves the account in the claims'
        transaction, then allauth's sign-up goes on with what was saved."""
        if not hasattr(self, "_saved"):
            self._saved = super().try_save(request)
        return self._saved


class AddEmailForm(AllauthAddEmailForm):
    """allauth's change of address, for the form sent twice at once (a double
    click): both requests find the address new and insert it, and the second
    insert breaks the one-row-per-user-and-address constraint. That request
    goes on with the row the first added (its confirmation mail is on its way)
    instead of failing."""

    def save(self, request):
        try:
            return super().save(request)
        except IntegrityError:
            address = EmailAddress.objects.filter(
                user=self.user, email=self.cleaned_data["email"].lower()
            ).first()
            if address is None:
                raise
            return address


class AvatarForm(forms.Form):
    # The whole image pipeline runs in clean(): every refusal (too large, not
    # an image, format not allowed, too many pixels, damaged) is a field error.
    avatar = ProcessedImageFormField(
        spec=AVATAR,
        label="New picture",
        help_text="JPEG, PNG, WebP or GIF. It is cropped to a 300x300 square.",
    )


class _AccountCountedCode:
    """allauth's code check, refused while the account's codes are locked
    (``AccountAdapter.account_attempt_count``): guesses spread over many addresses,
    each under allauth's own per-address limit, stop at the account's."""

    def clean_code(self) -> str:
        attempt = get_adapter(context.request).account_attempt_count(
            context.request, self.user, second_factor=True
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


class AuthenticateForm(_AccountCountedCode, MfaAuthenticateForm):
    """allauth's second-factor step at log-in (``MFA_FORMS``)."""


class ReauthenticateForm(_AccountCountedCode, MfaReauthenticateForm):
    """allauth's code asked again before a withdrawal, an API key, a change of
    address or password, or turning 2FA off (``MFA_FORMS``): a signed-in
    session, stolen, guesses no faster than a log-in."""


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


# Set in the session of a visitor whose last password reset e-mail was lost.
RESET_MAIL_LOST_SESSION_KEY = "password_reset_mail_lost"


class ResetPasswordForm(AllauthResetPasswordForm):
    """allauth's, with every mail counted against the address's limit
    (``reset_password``: 3 per address in 15 minutes).

    allauth counts a request once and mails each account holding the address;
    unverified, any number of accounts can hold it (allauth accepts a taken
    address rather than reveal that it is taken), so that many accounts would
    multiply the mails to someone's inbox. Each mail after the request's
    first takes a place of the same per-address limit, the account whose own
    address it is first, then the oldest, and none is sent once the limit is
    full.

    A mail to the address that was lost (``notice lost``, accounts.adapter)
    clears the address's count (as a lost confirmation link does: allauth
    can clear a limit, not give one place back), and the page after says it
    could not be sent (``RESET_MAIL_LOST_SESSION_KEY``, read by
    ``account/password_reset_done.html``) instead of allauth's "We have sent
    you an email". Only where that does not tell whether the address has an
    account: where an address without one is mailed too
    (``ACCOUNT_EMAIL_UNKNOWN_ACCOUNTS``, on by default) or told so at once."""

    def save(self, request, **kwargs) -> str:
        address = self.cleaned_data["email"].lower()

        # The account whose own address it is first: others may have added
        # it unverified, to take the places of the limit.
        def order(user) -> tuple[bool, int]:
            return ((user.email or "").lower() != address, user.pk)

        holders = sorted(self.users, key=order)
        # The first mail has the place allauth's view took for the request.
        self.users = holders[:1]
        for user in holders[1:]:
            if not ratelimit.consume(
                request,
                app="allauth.account",
                action="reset_password",
                config=_per_address_rates("reset_password"),
                key=address,
            ):
                break
            self.users.append(user)
        email = super().save(request, **kwargs)
        if mail_lost_to(request, address) and (
            allauth_account_settings.EMAIL_UNKNOWN_ACCOUNTS
            or not allauth_account_settings.PREVENT_ENUMERATION
        ):
            ratelimit.clear(
                request,
                app="allauth.account",
                action="reset_password",
                config=_per_address_rates("reset_password"),
                key=address,
            )
            request.session[RESET_MAIL_LOST_SESSION_KEY] = True
        else:
            request.session.pop(RESET_MAIL_LOST_SESSION_KEY, None)
        return email


def _per_address_rates(action: str) -> dict[str, str]:
    """The per-address (``/key``) rates of one of allauth's limits, as a
    configuration with which ``ratelimit.consume`` counts in the same places
    as allauth does (the rest, per client address, left out)."""
    rates = allauth_account_settings.RATE_LIMITS.get(action) or ""
    per_address = [
        rate
        for rate in rates.split(",")
        if rate.strip() and ratelimit.parse_rate(rate.strip()).per == "key"
    ]
    return {action: ",".join(per_address)}
