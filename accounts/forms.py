from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm

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
