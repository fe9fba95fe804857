"""What travels between a client and petseg's TorchServe: names, fields, media types, ports.

The one definition of the serving protocol, read by the handler (inside the .mar), the
TorchServe client (web proxy, `petseg` command, bench, tests) and the launcher. It imports only
the standard library, so the web app can read it without carrying the model code.
"""

from __future__ import annotations

from dataclasses import dataclass

MODEL_NAME = "petseg"
"""The name the archive is registered under; versions of it are managed by version string."""

OUTPUTS = {
    "json": "application/json",
    "mask": "image/png",
    "overlay": "image/jpeg",
    "rle": "application/vnd.petseg.coco-rle+json",
    "polygons": "application/geo+json",
}
"""Forms of the answer -> their media type: everything as JSON, the palette-PNG mask alone, the
overlay JPEG alone, COCO RLE per class, or polygons per class as a GeoJSON FeatureCollection."""
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


def upload_content_type(declared: str | None) -> str:
    """The Content-Type to send an image body with: image/* as declared, else octet-stream.

    TorchServe's Java frontend answers 500 to bytes labelled form-urlencoded (the default of
    curl --data-binary and urllib) and decodes text/JSON bodies before the handler sees them.
    """
    declared = (declared or "").strip()
    return declared if declared.lower().startswith("image/") else SAFE_BODY_TYPE


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
