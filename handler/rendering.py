"""Label maps -> what users receive: a palette PNG mask, an overlay, and per-class statistics."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from handler.imaging import palette_image
from handler.mask_formats import coco_rle, polygons


def encode(image: Image.Image, fmt: str, quality: int = 85) -> bytes:
    """PNG (fast zlib level: masks are flat and compress well anyway) or JPEG bytes."""
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.save(buffer, format="JPEG", quality=quality)
    else:
        image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def mask_png(labels: np.ndarray, palette: list[list[int]]) -> bytes:
    """Pixel values are class ids, the palette their colours: viewable and machine-readable."""
    return encode(palette_image(labels, palette), "png")


def overlay_image(
    rgb: Image.Image, labels: np.ndarray, palette: list[list[int]], alpha: float
) -> Image.Image:
    """The photo with every non-background pixel tinted by its class colour.

    All in PIL's uint8 C code (palette lookup, blend, composite): a float copy of a 24-megapixel
    photo would cost hundreds of MB per request, and numpy's colour lookup took 3x longer.
    """
    classes = palette_image(labels, palette)
    tinted = Image.blend(rgb, classes.convert("RGB"), alpha)
    foreground = Image.fromarray(labels).point([0] + [255] * 255)
    return Image.composite(tinted, rgb, foreground)


def class_stats(labels: np.ndarray, class_names: list[str]) -> list[dict[str, object]]:
    """Each class found besides background: pixel fraction and bounding box [x0, y0, x1, y1]."""
    counts = np.bincount(labels.ravel(), minlength=len(class_names))
    found = []
    for class_id in range(1, len(class_names)):
        if counts[class_id] == 0:
            continue
        rows = np.flatnonzero((labels == class_id).any(axis=1))
        cols = np.flatnonzero((labels == class_id).any(axis=0))
        found.append(
            {
                "id": class_id,
                "name": class_names[class_id],
                "fraction": round(float(counts[class_id]) / labels.size, 6),
                "bbox": [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1],
            }
        )
    return found


def rle_masks(labels: np.ndarray, class_names: list[str]) -> list[dict[str, object]]:
    """Each class found: its statistics and its COCO RLE (``class_stats`` + ``rle``)."""
    return [
        {
            **found,
            "area": int(np.count_nonzero(labels == found["id"])),
            "rle": coco_rle(labels == found["id"]),
        }
        for found in class_stats(labels, class_names)
    ]


def polygon_features(
    labels: np.ndarray, class_names: list[str], palette: list[list[int]], tolerance: float
) -> list[dict[str, object]]:
    """One GeoJSON Feature per class found: a MultiPolygon in pixel coordinates."""
    return [
        {
            "type": "Feature",
            "properties": {**found, "color": palette[found["id"]]},
            "geometry": {
                "type": "MultiPolygon",
                "coordinates": polygons(labels == found["id"], tolerance),
            },
        }
        for found in class_stats(labels, class_names)
    ]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
