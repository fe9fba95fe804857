"""Uploaded bytes -> an upright RGB image, or an InputError that says what is wrong with them.

Everything a client can get wrong is caught here and turned into a 4xx with a message, before
any model work: an empty body, bytes that are no image, a truncated or corrupt file, an image
too large to decode safely (decompression bombs: the pixel count is read from the header, before
decoding) or too small to segment.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")  # JPEG also opens MPO (phones)
FORMAT_NAMES = "JPEG, PNG, WebP, BMP, GIF or TIFF"


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


def decode_image(data: bytes, max_pixels: int, min_side: int) -> Image.Image:
    """Upright (EXIF orientation applied) 8-bit RGB pixels of the first frame."""
    image = open_image(bytes(data), max_pixels, min_side)
    try:
        image.seek(0)
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # not a copy when nothing to rotate
        return to_rgb(image)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(400, f"corrupt or truncated {image.format} image: {exc}") from exc
