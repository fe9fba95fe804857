"""Two segmentations of one photo compared from their COCO RLE answers, in plain Python.

The web image carries no numpy or Pillow, and needs none here: a COCO RLE is a list of run
lengths down the columns (zeros first), so each class's mask is a sorted list of intervals and
two masks are compared by walking both lists once, in time proportional to their runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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


def classes(answer: dict[str, Any]) -> tuple[int, dict[str, Intervals]]:
    """The pixel count and each class's intervals, from an ``rle`` output."""
    pixels = answer["width"] * answer["height"]
    return pixels, {m["name"]: intervals(m["rle"]["counts"]) for m in answer["masks"]}


def compare(first: dict[str, Any], second: dict[str, Any]) -> Comparison:
    """Two ``rle`` answers for the same photo: their agreement, per-class IoU, foreground."""
    pixels, a = classes(first)
    _, b = classes(second)
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
