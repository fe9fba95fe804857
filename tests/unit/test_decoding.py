import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from handler.decoding import InputError, decode_image, decode_photo, reduction
from tests.support import images

LIMIT, MIN_SIDE = 25_000_000, 8


def decode(data: bytes):
    return decode_image(data, LIMIT, MIN_SIDE)


@pytest.mark.parametrize("name", sorted(images.GOOD))
def test_every_supported_kind_decodes_to_rgb(name):
    image = decode(images.GOOD[name]())
    assert image.mode == "RGB" and min(image.size) >= MIN_SIDE


def test_exif_orientation_is_applied():
    assert decode(images.exif_rotated_jpeg(160, 120)).size == (120, 160)


def test_sixteen_bit_keeps_its_range():
    image = decode(images.sixteen_bit_png())
    lo, hi = image.convert("L").getextrema()
    assert lo < 5 and hi > 250


def test_transparency_is_flattened_onto_white():
    rgba = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    assert decode(images.encode(rgba, "PNG")).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"", 400, "empty request"),
        (b"hello, I am text", 415, "not a supported image"),
        (b"<html><body>hi</body></html>", 415, "not a supported image"),
        (b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", 415, "not a supported image"),
        (images.truncated_jpeg(), 400, "corrupt or truncated JPEG"),
        (images.png_with_bad_crc(), 400, "corrupt or truncated PNG"),
        (images.png(1, 1), 400, "at least 8 pixels"),
        (images.png_claiming_size(30000, 30000), 413, "too large"),
        (images.png_claiming_size(6000, 4200), 413, "the limit is 25000000"),
    ],
    ids=["empty", "text", "html", "pdf", "truncated", "bad-crc", "1x1", "bomb", "over-limit"],
)
def test_client_mistakes_are_input_errors(data, status, words):
    with pytest.raises(InputError, match=words) as caught:
        decode(data)
    assert caught.value.status == status


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_give_an_image_or_a_client_error(data):
    try:
        image = decode(data)
    except InputError as exc:
        assert 400 <= exc.status < 500 and exc.message
    else:
        assert image.mode == "RGB"


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 4000), st.integers(1, 255))
def test_corrupted_real_images_never_escape_as_other_errors(offset, value):
    data = bytearray(images.jpeg(48, 32) if offset % 2 else images.png(48, 32))
    data[offset % len(data)] ^= value
    try:
        decode(bytes(data))
    except InputError as exc:
        assert 400 <= exc.status < 500


def test_decoding_reads_only_the_first_frame():
    image = decode(images.animated_gif())
    assert image.size == (64, 48)
    assert Image.open(io.BytesIO(images.animated_gif())).n_frames == 3


@pytest.mark.parametrize(
    ("size", "max_side", "factor"),
    [((4000, 3000), 2048, 2), ((4000, 3000), 0, 1), ((1000, 700), 2048, 1), ((9000, 50), 1000, 8)],
)
def test_big_photos_are_reduced_by_a_power_of_two_for_the_overlay(size, max_side, factor):
    assert reduction(*size, max_side) == factor


@pytest.mark.parametrize("encoder", [images.jpeg, images.png])
def test_a_reduced_decode_keeps_the_photo_size_for_the_mask(encoder):
    photo = decode_photo(encoder(1000, 600), 25_000_000, 8, max_side=300)
    assert (photo.width, photo.height) == (1000, 600)
    assert photo.image.size == (250, 150) and photo.image.mode == "RGB"  # 1/4: JPEG or not


@pytest.mark.parametrize("size", [(4000, 3000), (1001, 601)])
def test_a_big_jpeg_is_reduced_by_libjpeg_while_decoded_unless_switched_off(size):
    data = images.jpeg(*size)
    drafted, full = Image.open(io.BytesIO(data)), Image.open(io.BytesIO(data))
    drafted.draft("RGB", (size[0] // 4, size[1] // 4))  # libjpeg's DCT scaling, 1/4
    full = full.reduce(4)  # a full decode, then 4x4 averages
    assert drafted.size == full.size  # the same size either way, odd sides rounded up
    max_side = -(-size[0] // 4)  # the smallest that asks for 1/4
    on = decode_photo(data, LIMIT, MIN_SIDE, max_side)
    off = decode_photo(data, LIMIT, MIN_SIDE, max_side, reduced_jpeg=False)
    assert on.image.tobytes() == drafted.convert("RGB").tobytes()
    assert off.image.tobytes() == full.tobytes()
    assert on.image.tobytes() != off.image.tobytes()  # the two ways differ: the switch works
    difference = np.abs(np.asarray(on.image, int) - np.asarray(off.image, int))
    assert difference.mean() < 3  # but only by rounding: the same photo
    assert (on.width, on.height) == (off.width, off.height) == size


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grey_and_cmyk_jpegs_are_reduced_to_rgb(mode):
    data = images.encode(Image.open(io.BytesIO(images.jpeg(1200, 800))).convert(mode), "JPEG")
    photo = decode_photo(data, LIMIT, MIN_SIDE, max_side=300)
    assert photo.image.size == (300, 200) and photo.image.mode == "RGB"


def test_a_photo_thinner_than_the_reduction_is_still_reduced():
    photo = decode_photo(images.jpeg(4000, 3), LIMIT, 1, max_side=1000)
    assert (photo.width, photo.height) == (4000, 3)
    assert photo.image.size == (1000, 1)


def test_a_reduced_rotated_photo_keeps_its_upright_size():
    photo = decode_photo(images.exif_rotated_jpeg(1600, 1200), 25_000_000, 8, max_side=800)
    assert (photo.width, photo.height) == (1200, 1600)
    assert photo.image.size == (600, 800)
