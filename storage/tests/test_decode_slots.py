"""storage.decode_slots: at most IMAGE_DECODE_SLOTS decodes at once per host,
held against other real processes (see the root conftest's holder)."""

from __future__ import annotations

import io
import threading
import time

import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from PIL import Image

from storage.decode_slots import WAIT_SECONDS, image_decode_slot
from storage.exceptions import ImageDecodersBusy
from storage.images import AVATAR, image_process
from tests.factories import image_bytes, jpeg_repeating_its_last_scan


def jpeg() -> ContentFile:
    return ContentFile(image_bytes("JPEG", (640, 480), (200, 30, 30)), name="photo.jpg")


def png_bomb() -> ContentFile:
    """A 16-bit RGBA PNG declaring 6000x6000 pixels: refused from its header."""
    buffer = io.BytesIO()
    Image.new("I;16", (6000, 6000)).save(buffer, "PNG")
    return ContentFile(buffer.getvalue(), name="bomb.png")


@pytest.mark.reliability("upload-slots")
def test_a_decode_waits_briefly_for_a_slot_then_is_refused(
    settings, decode_slots_holder
):
    settings.IMAGE_DECODE_SLOTS = 2
    decode_slots_holder(2)

    started = time.monotonic()
    with pytest.raises(ImageDecodersBusy) as refused:
        image_process(jpeg(), spec=AVATAR)
    waited = time.monotonic() - started

    assert WAIT_SECONDS <= waited < 1
    assert "try again in a few seconds" in str(refused.value)


def test_a_slot_another_process_releases_is_used_again(settings, decode_slots_holder):
    settings.IMAGE_DECODE_SLOTS = 1
    decode_slots_holder(1).release()

    assert image_process(jpeg(), spec=AVATAR).width == AVATAR.size


@pytest.mark.reliability("decoder-killed")
def test_a_killed_holder_frees_its_slots(settings, decode_slots_holder):
    settings.IMAGE_DECODE_SLOTS = 2
    holder = decode_slots_holder(2)
    with pytest.raises(ImageDecodersBusy):
        image_process(jpeg(), spec=AVATAR)

    holder.kill()

    assert image_process(jpeg(), spec=AVATAR).width == AVATAR.size


def test_a_slot_freed_during_the_wait_is_taken(settings, decode_slots_holder):
    settings.IMAGE_DECODE_SLOTS = 1
    holder = decode_slots_holder(1)
    threading.Timer(WAIT_SECONDS / 3, holder.release).start()

    assert image_process(jpeg(), spec=AVATAR).width == AVATAR.size


def test_the_slots_are_shared_with_the_holders_of_other_processes(
    settings, decode_slots_holder
):
    settings.IMAGE_DECODE_SLOTS = 3
    decode_slots_holder(2)

    with image_decode_slot(), pytest.raises(ImageDecodersBusy):
        # The third slot is this process's; a fourth decode finds none.
        image_process(jpeg(), spec=AVATAR)


def test_threads_of_one_process_each_need_a_slot(settings):
    settings.IMAGE_DECODE_SLOTS = 1
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with image_decode_slot():
            taken.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        taken.wait(10)
        with pytest.raises(ImageDecodersBusy):
            image_process(jpeg(), spec=AVATAR)
    finally:
        release.set()
        thread.join()
    assert image_process(jpeg(), spec=AVATAR).width == AVATAR.size


def jpeg_scan_bomb() -> ContentFile:
    """A progressive JPEG whose last scan is repeated: refused from its segments."""
    return ContentFile(jpeg_repeating_its_last_scan(2000), name="bomb.jpg")


@pytest.mark.parametrize(
    ("bomb", "code"),
    [(png_bomb, "too_many_pixels"), (jpeg_scan_bomb, "too_many_scans")],
)
@pytest.mark.reliability("upload-slots")
def test_an_image_refused_from_its_header_never_waits_for_a_slot(
    settings, decode_slots_holder, bomb, code
):
    settings.IMAGE_DECODE_SLOTS = 1
    decode_slots_holder(1)
    upload = bomb()

    started = time.monotonic()
    with pytest.raises(ValidationError) as refused:
        image_process(upload, spec=AVATAR)

    assert refused.value.code == code
    assert time.monotonic() - started < WAIT_SECONDS
