"""Two segmentations of one photo compared, in plain Python.

The web image carries no numpy or Pillow, and needs none here: a COCO RLE is a list of run
lengths down the columns (zeros first), so each class's mask is a sorted list of intervals and
two masks are compared by walking both lists once, in time proportional to their runs. The
default version's side comes from the user's own answer when it holds the masks (``rle``,
``labels``: the RLE; ``json``, ``mask``: the mask PNG, read by frontend_server.mask_png), so a
shadow asks TorchServe only for the candidate's.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from frontend_server import mask_png

Intervals = list[tuple[int, int]]
"""[start, end) of each run of ones, in column-major pixel order."""


def decode_counts(counts: str) -> list[int]:
    """COCO's compressed RLE string (pycocotools' rleFrString) -> run lengths: 6-bit
    characters carrying 5 bits each, the last one of a number with a sign bit; from the third
    count on, each is stored as its difference to the count two before."""
    runs: list[int] = []
    at = 0
    while at < len(counts):
        value, shift, more = 0, 0, True
        while more:
            char = ord(counts[at]) - 48
            value |= (char & 0x1F) << shift
            more = bool(char & 0x20)
            at += 1
            shift += 5
            if not more and char & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def intervals(counts: str) -> Intervals:
    found, position = [], 0
    for index, run in enumerate(decode_counts(counts)):
        if index % 2:
            found.append((position, position + run))
        position += run
    return found


def overlap(a: Intervals, b: Intervals) -> int:
    """Pixels in both."""
    total = i = j = 0
    while i < len(a) and j < len(b):
        low, high = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        total += max(0, high - low)
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def size(runs: Iterable[tuple[int, int]]) -> int:
    return sum(end - start for start, end in runs)


@dataclass(frozen=True)
class Comparison:
    """How two answers for one photo agree."""

    agreement: float
    """Share of pixels both give the same class (background included)."""
    iou: dict[str, float]
    """Per class either found: intersection over union of its two masks."""
    foreground: tuple[float, float]
    """Share of pixels that are a pet, in the first answer and in the second."""


@dataclass(frozen=True)
class Segmentation:
    """One answer's masks: the photo's pixel count and each class's intervals (background,
    what no class holds, is left out)."""

    pixels: int
    classes: dict[str, Intervals]


def from_rle(answer: dict[str, Any]) -> Segmentation:
    """From an ``rle`` (or ``labels``) answer."""
    pixels = answer["width"] * answer["height"]
    return Segmentation(pixels, {m["name"]: intervals(m["rle"]["counts"]) for m in answer["masks"]})


def from_mask_png(png: bytes, names: list[str]) -> Segmentation | None:
    """From the handler's mask PNG, whose pixel values index ``names`` (0: background); None if
    it cannot be read here or holds an id beyond ``names``."""
    decoded = mask_png.decode(png)
    if decoded is None:
        return None
    width, height, ids = decoded
    if not mask_png.all_below(ids, len(names)):
        return None
    found = {
        names[class_id]: mask_png.runs(ids, class_id)
        for class_id in range(1, len(names))
        if bytes([class_id]) in ids
    }
    return Segmentation(width * height, found)


def from_answer(output: str, body: bytes, names: list[str] | None) -> Segmentation | None:
    """The masks a user's answer already holds, or None (an overlay, polygons, or a form this
    proxy cannot read): the default version is then asked for its RLE. ``names``: the default
    version's class names, for a bare ``mask`` (a ``json`` answer carries its own)."""
    try:
        if output in ("rle", "labels"):
            return from_rle(json.loads(body))
        if output == "json":
            answer = json.loads(body)
            own = [c["name"] for c in sorted(answer["classes"], key=lambda c: c["id"])]
            return from_mask_png(base64.b64decode(answer["mask_png"], validate=True), own)
        if output == "mask" and names:
            return from_mask_png(body, names)
    except (ValueError, KeyError, TypeError, IndexError, binascii.Error):
        return None
    return None


def compare(first: Segmentation, second: Segmentation) -> Comparison:
    """Two segmentations of the same photo: their agreement, per-class IoU, foreground."""
    pixels, a, b = first.pixels, first.classes, second.classes
    both = {name: overlap(a.get(name, []), b.get(name, [])) for name in {*a, *b}}
    sizes_a = {name: size(runs) for name, runs in a.items()}
    sizes_b = {name: size(runs) for name, runs in b.items()}
    iou = {
        name: common / union
        for name, common in both.items()
        if (union := sizes_a.get(name, 0) + sizes_b.get(name, 0) - common)
    }
    pets_a, pets_b = sum(sizes_a.values()), sum(sizes_b.values())
    pets_in_both = sum(overlap(runs, other) for runs in a.values() for other in b.values())
    background_in_both = pixels - pets_a - pets_b + pets_in_both
    agreement = (sum(both.values()) + background_in_both) / pixels
    return Comparison(agreement, iou, (pets_a / pixels, pets_b / pixels))
