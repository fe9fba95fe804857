"""Uploaded bytes -> an upright RGB image, or an InputError that says what is wrong with them.

Everything a client can get wrong is caught here and turned into a 4xx with a message, before
any model work: an empty body, bytes that are no image, a truncated or corrupt file, an image
too large to decode safely (decompression bombs: the pixel count is read from the header, before
decoding) or too small to segment.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")  # JPEG also opens MPO (phones)
FORMAT_NAMES = "JPEG, PNG, WebP, BMP, GIF or TIFF"
ORIENTATION = 0x0112
"""The EXIF tag of how the camera was held; 5 to 8 turn the picture a quarter."""
QUARTER_TURNS = (5, 6, 7, 8)


class InputError(Exception):
    """A request the client must fix; ``status`` is the HTTP code to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def open_image(data: bytes, max_pixels: int, min_side: int) -> Image.Image:
    """Identify the image and check its header-declared size, without decoding pixels."""
    if not data:
        raise InputError(400, "empty request: send the image bytes as the body or a form file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as exc:
        raise InputError(413, f"image too large to decode safely: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(
            415, f"not a supported image ({len(data)} bytes): send a {FORMAT_NAMES} file"
        ) from exc
    width, height = image.size
    if width * height > max_pixels:
        raise InputError(
            413,
            f"image too large: {width}x{height} = {width * height} pixels; "
            f"the limit is {max_pixels}",
        )
    if min(width, height) < min_side:
        raise InputError(
            400, f"image is {width}x{height}; it must be at least {min_side} pixels on each side"
        )
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode -> 8-bit RGB: 16-bit scaled down, transparency flattened onto white."""
    if image.mode == "RGB":
        return image  # convert() would copy it
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array * (255.0 / peak), 0, 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        canvas = Image.new("RGB", image.size, (255, 255, 255))
        canvas.paste(image.convert("RGBA"), mask=image.getchannel("A"))
        return canvas
    return image.convert("RGB")


@dataclass(frozen=True)
class Photo:
    """A decoded upload: upright RGB pixels, possibly reduced, and the photo's full size."""

    image: Image.Image
    width: int
    height: int


def reduction(width: int, height: int, max_side: int) -> int:
    """The smallest of 1, 2, 4, 8 that brings the longer side to ``max_side`` or below
    (0: no limit)."""
    longest = max(width, height)
    if not max_side or longest <= max_side:
        return 1
    return next((s for s in (2, 4, 8) if -(-longest // s) <= max_side), 8)


def decode_photo(
    data: bytes, max_pixels: int, min_side: int, max_side: int = 0, reduced_jpeg: bool = True
) -> Photo:
    """Upright (EXIF orientation applied) 8-bit RGB pixels of the first frame, reduced by a power
    of two until the longer side is at most ``max_side`` (0: full size), for the overlay.

    With ``reduced_jpeg`` a JPEG is reduced while it is decoded (libjpeg's DCT scaling skips
    most of the work of a full-size decode); other formats are reduced after a full decode.
    ``width`` and ``height`` stay the photo's own, upright: the mask is made at that size.
    """
    image = open_image(bytes(data), max_pixels, min_side)
    width, height = image.size
    factor = reduction(width, height, max_side)
    try:
        image.seek(0)
        if reduced_jpeg and factor > 1 and image.format in ("JPEG", "MPO"):
            image.draft("RGB", (max(1, width // factor), max(1, height // factor)))
        image.load()
        # what is left to reduce after the decode (nothing when libjpeg did it)
        factor = reduction(*image.size, max_side)
        if factor > 1:
            image = image.reduce(factor)
        orientation = image.getexif().get(ORIENTATION, 1)
        image = ImageOps.exif_transpose(image) if orientation != 1 else image
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(400, f"corrupt or truncated {image.format} image: {exc}") from exc
    if orientation in QUARTER_TURNS:
        width, height = height, width
    return Photo(to_rgb(image), width, height)


def decode_image(data: bytes, max_pixels: int, min_side: int) -> Image.Image:
    """Upright (EXIF orientation applied) 8-bit RGB pixels of the first frame, full size."""
    return decode_photo(data, max_pixels, min_side).image
