"""What one TorchServe request asks for: the image bytes and the form of the answer.

TorchServe hands the handler one dict per request: a raw body arrives under "body", multipart
form fields under their own names, with text and JSON bodies already decoded to str / objects.
URL query parameters never arrive (TorchServe 0.12 keeps them), so the answer's form comes from
a multipart field ``output`` or the Accept header, and the polygon tolerance from a field or a
header.
"""

from __future__ import annotations

from dataclasses import dataclass

from handler.decoding import InputError
from handler.protocol import (
    DEFAULT_OUTPUT,
    IMAGE_FIELDS,
    OUTPUT_FIELD,
    OUTPUTS,
    TOLERANCE_FIELD,
    parse_tolerance,
)

ACCEPT_TO_OUTPUT = {media: output for output, media in OUTPUTS.items()}


@dataclass(frozen=True)
class Request:
    image: bytes
    output: str
    """One of handler.protocol.OUTPUTS."""
    tolerance: float = 0.0
    """Polygon simplification, pixels (output 'polygons' only)."""


def _text(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", errors="replace")
    return str(value)


def has_image(row: dict) -> bool:
    """Whether the request carries anything where an image may be."""
    return any(row.get(field) is not None for field in ("body", *IMAGE_FIELDS))


def image_bytes(row: dict) -> bytes:
    """The uploaded file of a request, from its body or a known multipart field."""
    for field in ("body", *IMAGE_FIELDS):
        value = row.get(field)
        if isinstance(value, bytes | bytearray):
            return bytes(value)
        if value is not None and field == "body":
            raise InputError(
                415,
                f"not a supported image: the body's Content-Type made TorchServe decode it as "
                f"{type(value).__name__} (text or JSON); send the image file's bytes as "
                "image/* or application/octet-stream",
            )
        if value is not None:
            raise InputError(400, f"form field {field!r} holds text, not an image file")
    names = ", ".join(repr(k) for k in row) or "none"
    raise InputError(
        400,
        f"no image file in the request (fields: {names}); send the image bytes as the body "
        f"or as a multipart file field named one of {', '.join(IMAGE_FIELDS)}",
    )


def output_kind(row: dict, accept: str | None) -> str:
    """From the ``output`` form field, else the Accept header, else JSON."""
    if OUTPUT_FIELD in row:
        output = _text(row[OUTPUT_FIELD]).strip().lower()
        if output not in OUTPUTS:
            raise InputError(400, f"output={output!r}: use one of {', '.join(OUTPUTS)}")
        return output
    for media in (accept or "").split(","):
        output = ACCEPT_TO_OUTPUT.get(media.split(";")[0].strip().lower())
        if output:
            return output
    return DEFAULT_OUTPUT


def tolerance(row: dict, header: str | None) -> float:
    """From the ``tolerance`` form field, else the header, else 0."""
    raw = _text(row[TOLERANCE_FIELD]) if TOLERANCE_FIELD in row else header
    if raw is None:
        return 0.0
    try:
        return parse_tolerance(raw)
    except ValueError as exc:
        raise InputError(400, str(exc)) from exc


def parse_request(
    row: dict, accept: str | None = None, tolerance_header: str | None = None
) -> Request:
    return Request(image_bytes(row), output_kind(row, accept), tolerance(row, tolerance_header))
