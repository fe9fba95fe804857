"""The handler's mask PNG read back as class ids, in plain Python, for the shadow comparison.

A shadowed upload already holds the default version's mask when the user asked for ``json`` or
``mask``: decoding it here spares TorchServe a second inference of the same photo. The web image
carries no Pillow or numpy, and needs neither for this one kind of PNG: a palette (or grey)
image of 1, 2, 4 or 8 bits per pixel, not interlaced, whose pixel values are class ids
(handler.rendering.mask_png). zlib inflates it; its scanlines carry filter type 0 (Pillow writes
palette images unfiltered). Any other PNG gives None: the caller then asks TorchServe, as it
would have without this shortcut.

The ids come out column by column (COCO RLE's order, frontend_server.masks), one byte a pixel,
so each class's runs are found by a regular expression over bytes, in C.
"""

from __future__ import annotations

import re
import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
PALETTE, GREY = 3, 0
MAX_PIXELS = 80_000_000
"""Beyond the uploads' own pixel limit: a header claiming more is not one of ours."""


def decode(png: bytes) -> tuple[int, int, bytes] | None:
    """(width, height, class id of each pixel, column-major) of a mask PNG; None if it is not
    the kind the handler writes."""
    header = read_chunks(png)
    if header is None:
        return None
    (width, height, depth, colour, _, _, interlace), data = header
    if colour not in (PALETTE, GREY) or depth not in (1, 2, 4, 8) or interlace:
        return None
    if not 0 < width * height <= MAX_PIXELS:
        return None
    row_bytes = (width * depth + 7) // 8
    try:
        raw = zlib.decompress(data)
    except zlib.error:
        return None
    if len(raw) != height * (row_bytes + 1) or any(raw[:: row_bytes + 1]):
        return None  # short, or filtered scanlines
    pixels = bytearray(raw)
    del pixels[:: row_bytes + 1]  # the filter bytes
    ids = unpack(bytes(pixels), depth)
    stride = row_bytes * (8 // depth)  # a row's pixels, padding included
    return width, height, b"".join(ids[x::stride] for x in range(width))


def read_chunks(png: bytes) -> tuple[tuple[int, ...], bytes] | None:
    """The IHDR fields and the IDAT data joined, or None for something that is no PNG."""
    if not png.startswith(SIGNATURE):
        return None
    at, header, data = len(SIGNATURE), None, []
    while at + 8 <= len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind, body = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        if len(body) != length:
            return None
        if kind == b"IHDR" and length == 13:
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            data.append(body)
        elif kind == b"IEND":
            break
        at += 12 + length
    if header is None or not data:
        return None
    return header, b"".join(data)


def unpack(row: bytes, depth: int) -> bytes:
    """One byte a pixel out of ``depth`` bits a pixel, the leftmost pixel in the high bits."""
    if depth == 8:
        return row
    per_byte = 8 // depth
    out = bytearray(len(row) * per_byte)
    for slot in range(per_byte):
        shift = 8 - depth * (slot + 1)
        out[slot::per_byte] = row.translate(SLOT_TABLES[depth][shift])
    return bytes(out)


SLOT_TABLES = {
    depth: {
        8 - depth * (slot + 1): bytes(
            (value >> (8 - depth * (slot + 1))) & ((1 << depth) - 1) for value in range(256)
        )
        for slot in range(8 // depth)
    }
    for depth in (1, 2, 4)
}
"""For each depth and bit shift: byte -> the pixel value at that shift."""


def all_below(ids: bytes, below: int) -> bool:
    """Whether every id is below ``below`` (deleting the allowed ones leaves nothing)."""
    return not ids.translate(None, bytes(range(below)))


def runs(column_major: bytes, class_id: int) -> list[tuple[int, int]]:
    """[start, end) of each run of ``class_id`` pixels."""
    found = re.finditer(re.escape(bytes([class_id])) + b"+", column_major)
    return [match.span() for match in found]
