import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from PIL import Image

from tokens.models import Token

pytestmark = pytest.mark.django_db


def test_seed_demo_refuses_to_run_without_debug(settings):
    settings.DEBUG = False

    with pytest.raises(CommandError, match="DEBUG=true"):
        call_command("seed_demo")


def test_seed_demo_is_idempotent_and_stores_real_pictures(
    settings, any_storage, stored_names
):
    settings.DEBUG = True

    call_command("seed_demo", stdout=io.StringIO())
    first = stored_names(any_storage)
    call_command("seed_demo", stdout=io.StringIO())

    assert stored_names(any_storage) == first
    assert Token.objects.count() == 12
    assert get_user_model().objects.filter(username__in=["demo", "admin"]).count() == 2
    assert get_user_model().objects.get(username="admin").is_staff
    logo = Token.objects.get(symbol="BTC").logo
    with any_storage.open(logo.name) as stored:
        image = Image.open(io.BytesIO(stored.read()))
    assert (image.format, image.size) == ("PNG", (200, 200))
    demo = get_user_model().objects.get(username="demo")
    assert demo.profile.has_custom_avatar
    assert demo.check_password("demo-pass-2026")
