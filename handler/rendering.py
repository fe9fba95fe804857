"""Label maps -> what users receive: a palette PNG mask, an overlay, and per-class statistics."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from handler.imaging import palette_image
from handler.mask_formats import class_rles, polygons, rle_area
from handler.upsampling import Region


def encode(image: Image.Image, fmt: str, quality: int = 85) -> bytes:
    """PNG (fast zlib level: masks are flat and compress well anyway) or JPEG bytes."""
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.save(buffer, format="JPEG", quality=quality)
    else:
        image.save(buffer, format="PNG", compress_level=1, bits=_png_bits(image))
    return buffer.getvalue()


def _png_bits(image: Image.Image) -> int:
    """The fewest bits per pixel a palette image's class ids need (1, 2, 4 or 8): a 3-class
    12 MP mask packs 4 pixels a byte, 2.4x faster to compress and a third of the size."""
    if image.mode != "P":
        return 8
    colours = len(image.getpalette() or []) // 3
    return next(bits for bits in (1, 2, 4, 8) if colours <= 1 << bits)


def mask_png(labels: np.ndarray, palette: list[list[int]]) -> bytes:
    """Pixel values are class ids, the palette their colours: viewable and machine-readable."""
    return encode(palette_image(labels, palette), "png")


def paint_overlay(
    rgb: Image.Image,
    labels: np.ndarray,
    palette: list[list[int]],
    alpha: float,
    found: list[dict[str, object]],
) -> Image.Image:
    """Tints ``rgb`` IN PLACE (and returns it): every pixel of a class ``found`` (see
    :func:`class_stats`) is blended with the class colour by ``alpha``.

    ``rgb`` may be the photo reduced by a power of two (see decode_photo); ``labels`` and the
    bounding boxes are at the photo's own size and are sampled down to it. Only each class's
    bounding box is touched, by PIL's C paste through a uint8 alpha mask: no copy of the photo
    (a 12-megapixel photo is 36 MB; a float copy hundreds), and background outside the pets
    costs nothing (4x faster than blend + composite over the whole photo).
    """
    factor = max(1, round(labels.shape[1] / rgb.width))
    classes = Image.fromarray(np.ascontiguousarray(labels[::factor, ::factor]))
    if classes.size != rgb.size:  # not a power-of-two reduction: sample to the exact size
        classes = Image.fromarray(labels).resize(rgb.size, Image.Resampling.NEAREST)
    weight = round(alpha * 255)
    for region in found:
        class_id = int(region["id"])
        x0, y0, x1, y1 = region["bbox"]
        box = (x0 // factor, y0 // factor, -(-x1 // factor), -(-y1 // factor))
        lookup = [0] * 256
        lookup[class_id] = weight
        rgb.paste(tuple(palette[class_id]), box, classes.crop(box).point(lookup))
    return rgb


def class_stats(
    regions: dict[int, Region], class_names: list[str], pixels: int
) -> list[dict[str, object]]:
    """Each class found besides background, from the regions the labels were made with
    (:func:`handler.model.photo_labels`): pixel fraction and bounding box [x0, y0, x1, y1]."""
    return [
        {
            "id": class_id,
            "name": class_names[class_id],
            "fraction": round(region.pixels / pixels, 6),
            "bbox": list(region.box),
        }
        for class_id, region in regions.items()
        if class_id > 0
    ]


def rle_masks(labels: np.ndarray, found: list[dict[str, object]]) -> list[dict[str, object]]:
    """Each class found: its statistics (``class_stats``), its area and its COCO RLE."""
    rles = class_rles(labels, [int(stats["id"]) for stats in found])
    return [
        {**stats, "area": rle_area(rles[stats["id"]]), "rle": rles[stats["id"]]} for stats in found
    ]


def polygon_features(
    labels: np.ndarray, found: list[dict[str, object]], palette: list[list[int]], tolerance: float
) -> list[dict[str, object]]:
    """One GeoJSON Feature per class found: a MultiPolygon in pixel coordinates."""
    return [
        {
            "type": "Feature",
            "properties": {**stats, "color": palette[stats["id"]]},
            "geometry": {
                "type": "MultiPolygon",
                "coordinates": polygons(labels == stats["id"], tolerance),
            },
        }
        for stats in found
    ]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
