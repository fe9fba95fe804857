"""Test images: made on the fly, in every format and with every defect the handler must cope
with, and the page's sample photos."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLES = Path(__file__).resolve().parents[2] / "frontend_server" / "static" / "samples"
SAMPLE_PHOTOS = tuple(path.read_bytes() for path in sorted(SAMPLES.glob("*.jpg")))
"""The page's sample photos (a cat, a dog, two dogs), JPEG."""


def photo(width: int = 160, height: int = 120, seed: int = 0) -> Image.Image:
    """A smooth colourful RGB picture (compresses like a photo, unlike noise)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(seed)
    phases = rng.uniform(0, 6.28, 3)
    rgb = [127 + 120 * np.sin(xx / 17 + yy / 23 + p) for p in phases]
    return Image.fromarray(np.stack(rgb, axis=-1).astype(np.uint8))


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def jpeg(width: int = 160, height: int = 120, **options: object) -> bytes:
    return encode(photo(width, height), "JPEG", **options)


def png(width: int = 160, height: int = 120) -> bytes:
    return encode(photo(width, height), "PNG")


def exif_rotated_jpeg(width: int = 160, height: int = 120) -> bytes:
    """Stored landscape, EXIF orientation 6: viewers (and we) show it portrait."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(photo(width, height), "JPEG", exif=exif.tobytes())


def sixteen_bit_png(width: int = 64, height: int = 48) -> bytes:
    ramp = np.linspace(0, 65535, width * height, dtype=np.uint16).reshape(height, width)
    return encode(Image.fromarray(ramp), "PNG")


def animated_gif(width: int = 64, height: int = 48) -> bytes:
    frames = [photo(width, height, seed).convert("P") for seed in range(3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def from_base64(data: str) -> Image.Image:
    """An image of a JSON answer (``mask_png``, ``overlay_jpeg``)."""
    return Image.open(io.BytesIO(base64.b64decode(data)))


def png_claiming_size(width: int, height: int) -> bytes:
    """A small PNG whose header claims another size (a decompression-bomb lookalike)."""
    data = bytearray(encode(Image.new("L", (8, 8)), "PNG"))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def jpeg_claiming_size(width: int, height: int) -> bytes:
    """A small baseline JPEG whose frame header (SOF0) claims another size."""
    data = bytearray(jpeg(16, 16))
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def png_with_bad_crc() -> bytes:
    data = bytearray(png(32, 32))
    data[-20] ^= 0xFF  # inside the last IDAT chunk or its CRC
    return bytes(data)


def truncated_jpeg() -> bytes:
    data = jpeg(200, 150)
    return data[: len(data) // 2]


GOOD = {
    "jpeg": lambda: jpeg(),
    "png": lambda: png(),
    "webp": lambda: encode(photo(), "WEBP"),
    "bmp": lambda: encode(photo(), "BMP"),
    "gif": animated_gif,
    "grayscale": lambda: encode(photo().convert("L"), "JPEG"),
    "rgba": lambda: encode(photo().convert("RGBA"), "PNG"),
    "cmyk": lambda: encode(photo().convert("CMYK"), "JPEG"),
    "16bit": sixteen_bit_png,
    "palette": lambda: encode(photo().convert("P"), "PNG"),
}
"""Uploads that must succeed: name -> bytes factory."""
