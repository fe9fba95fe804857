"""What travels between a client and petseg's TorchServe: names, fields, media types, ports.

The one definition of the serving protocol, read by the handler (inside the .mar), the
TorchServe client (web proxy, `petseg` command, bench, tests) and the launcher. It imports only
the standard library, so the web app can read it without carrying the model code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MODEL_NAME = "petseg"
"""The name the archive is registered under; versions of it are managed by version string."""

OUTPUTS = {
    "json": "application/json",
    "mask": "image/png",
    "overlay": "image/jpeg",
    "rle": "application/vnd.petseg.coco-rle+json",
    "polygons": "application/geo+json",
    "labels": "application/vnd.petseg.labels+json",
}
"""Forms of the answer -> their media type: everything as JSON, the palette-PNG mask alone, the
overlay JPEG alone, COCO RLE per class, polygons per class as a GeoJSON FeatureCollection, or
the labels a labelling run keeps (the mask PNG and each class's COCO RLE: no overlay made, and
the client decodes nothing to write a COCO file)."""
DEFAULT_OUTPUT = "json"
OUTPUT_FIELD = "output"
"""Multipart text field that picks the output (TorchServe passes no query parameters to the
handler; the Accept header with one of the OUTPUTS media types works too)."""

TOLERANCE_FIELD = "tolerance"
"""Multipart text field: polygon simplification in pixels (0, the default, follows every pixel
edge); ``TOLERANCE_HEADER`` carries it with a raw body."""
TOLERANCE_HEADER = "X-Petseg-Tolerance"
MAX_TOLERANCE = 100.0

IMAGE_FIELDS = ("file", "image", "data")
"""Multipart fields that may hold the image, the documented one first. A raw body works too."""

SAFE_BODY_TYPE = "application/octet-stream"

REQUEST_ID_HEADER = "X-Request-ID"
"""One id per upload, from the caller or made by the proxy, sent on to TorchServe: the proxy's
log, TorchServe's access log and the handler's log all carry it. (TorchServe answers with an
``x-request-id`` of its own, a UUID, which the handler logs beside ours.)"""
REQUEST_ID_PARAM = "request_id"
"""The same id as a query parameter of the prediction URL: TorchServe's access log records the
URL and no header, and no query parameter reaches the handler, so it changes nothing else."""
REQUEST_ID_PATTERN = r"[A-Za-z0-9._:@+=/-]{1,128}"
"""UUIDs, W3C trace ids, base64 and the like; nothing that could break a log line or a URL."""
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
_IMAGE_TYPE = re.compile(r"image/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}", re.IGNORECASE)
"""image/<subtype> with the characters RFC 6838 allows in a subtype name."""
MODEL_VERSION_HEADER = "X-Petseg-Model-Version"
"""Set by the handler on every answer: the version that served it (the proxy's metric label)."""


def valid_request_id(value: str | None) -> str | None:
    """``value`` if it is usable as a request id, else None (the caller makes a new one)."""
    return value if value is not None and _REQUEST_ID.fullmatch(value) else None


def upload_content_type(declared: str | None) -> str:
    """The Content-Type to send an image body with: image/* as declared, else octet-stream.

    TorchServe's Java frontend answers 500 to bytes labelled form-urlencoded (the default of
    curl --data-binary and urllib) and decodes text/JSON bodies before the handler sees them.
    A declared type that is no plain media type (parameters, spaces, non-ASCII) is not sent on.
    """
    declared = (declared or "").strip()
    return declared if _IMAGE_TYPE.fullmatch(declared) else SAFE_BODY_TYPE


def parse_tolerance(raw: str) -> float:
    """A polygon tolerance in pixels, from 0 to ``MAX_TOLERANCE``; ValueError with the message
    for the client otherwise (the handler and the web proxy check it alike)."""
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= MAX_TOLERANCE:
        raise ValueError(f"tolerance={raw!r}: give pixels from 0 to {MAX_TOLERANCE:g}")
    return value


@dataclass(frozen=True)
class Ports:
    """TorchServe's listening ports; the defaults are what `petseg serve` uses."""

    inference: int = 8080
    management: int = 8081
    metrics: int = 8082
    grpc_inference: int = 7070
    grpc_management: int = 7071
    workers: int = 9000
    """First worker number: workers talk over unix sockets named after it."""


KEY_FILE_NAME = "key_file.json"
"""Written by TorchServe into the directory it starts from: the inference, management and token
API keys (token authorization is on by default in 0.12)."""
