"""A bulk run's masks as one COCO "instances" file, the format annotation tools import.

One annotation per class found in a photo (petseg segments classes, not individual animals: two
cats in a photo share one "cat" annotation), with its pixel area, its bounding box [x, y, w, h]
and its segmentation: COCO's compressed RLE (exact; ``counts`` a str, by the handler's encoder:
the strings of the server's own ``rle`` answer), or on request polygons, the outer ring of each
region, simplified by Douglas-Peucker to a tolerance in pixels. COCO polygons cannot hold
holes, so a region's holes are filled and polygons only approximate the mask; RLE is the exact
form.

Every annotation has ``iscrowd`` 0. COCO marks RLE annotations iscrowd 1 in its own data, but
that flag says "a crowd to ignore": evaluation skips such regions, and detectron2 and MMDetection
drop them from training. These masks are labels to review and train on, so they are ordinary
annotations. pycocotools (``COCO.annToMask``) and CVAT read RLE or polygons by the
segmentation's shape, whatever the flag says; Label Studio's converter reads polygons only and
takes iscrowd 1 for RLE it cannot read.

Categories are the model's classes, background excluded, with the model's class ids (the
values of the mask PNGs) and names. The file is written from the run's journal, as a stream
and atomically: a reader sees the previous file or the new one, and no record is held in memory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from handler.mask_formats import class_rles, polygons, rle_area, rle_box
from torchserve_client.report import replacing


def annotations(
    labels: np.ndarray, class_ids: Iterable[int], tolerance: float | None = None
) -> list[dict[str, Any]]:
    """Each class of ``class_ids`` present in a label map: its area, bbox and RLE, and its
    polygons too when a ``tolerance`` is given (the journal keeps both forms apart)."""
    found = []
    for class_id, rle in class_rles(labels, class_ids).items():
        entry = {"category_id": class_id, "area": rle_area(rle), "bbox": rle_box(rle), "rle": rle}
        if tolerance is not None:
            entry["polygons"] = outer_rings(labels == class_id, tolerance)
        found.append(entry)
    return found


def served_annotations(answer: dict[str, Any], class_ids: Iterable[int]) -> list[dict[str, Any]]:
    """The same as :func:`annotations`, from the server's ``labels`` answer (its classes' area
    and RLE as the handler made them from the label map it holds)."""
    wanted = set(class_ids)
    try:
        return [
            {
                "category_id": mask["id"],
                "area": mask["area"],
                "bbox": rle_box(mask["rle"]),
                "rle": mask["rle"],
            }
            for mask in answer["masks"]
            if mask["id"] in wanted
        ]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"the answer's masks are not COCO RLE: {exc!r}") from exc


def outer_rings(mask: np.ndarray, tolerance: float) -> list[list[float]]:
    """COCO polygons: per region its outer ring as [x0, y0, x1, y1, ...], pixel-corner
    coordinates, not closed (COCO closes them). The widest region comes first: Label Studio's
    COCO converter imports only the first polygon of an annotation."""
    rings = [np.asarray(shape[0][:-1]) for shape in polygons(mask, tolerance)]
    rings.sort(key=lambda ring: -np.prod(np.ptp(ring, axis=0)))
    return [ring.ravel().tolist() for ring in rings]


def categories(card: dict[str, Any]) -> list[dict[str, Any]]:
    """The model card's classes but background (id 0): ids and names as the model spec has
    them; no supercategory (the classes are flat), given as "" for tools that index it."""
    return [
        {"id": c["id"], "name": c["name"], "supercategory": ""}
        for c in card["classes"]
        if c["id"] > 0
    ]


def write(
    path: Path,
    records: Callable[[], Iterator[dict[str, Any]]],
    card: dict[str, Any],
    polygons: bool = False,
) -> int:
    """The COCO file of the journal's ``records`` (a fresh iterator per call: images and
    annotations are two passes over it, with the same ids); the number of images."""
    info = {
        "description": f"{card['name']} masks",
        "version": card["version"],
        "date_created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with replacing(path) as out:
        out.write(f'{{"info": {json.dumps(info)}, "licenses": [],\n')
        out.write(f'"categories": {json.dumps(categories(card))},\n"images": [')
        count = _items(out, map(_image, enumerate(records(), 1)))
        out.write('],\n"annotations": [')
        _items(out, _annotations(records(), polygons))
        out.write("]}\n")
    return count


def _image(numbered: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    image_id, record = numbered
    return {
        "id": image_id,
        "file_name": record["file"],
        "width": record["width"],
        "height": record["height"],
    }


def _annotations(records: Iterator[dict[str, Any]], polygons: bool) -> Iterator[dict[str, Any]]:
    annotation_id = 0
    for image_id, record in enumerate(records, 1):
        for found in record["annotations"]:
            annotation_id += 1
            yield {
                "id": annotation_id,
                "image_id": image_id,
                "category_id": found["category_id"],
                "segmentation": found["polygons"] if polygons else found["rle"],
                "area": found["area"],
                "bbox": found["bbox"],
                "iscrowd": 0,
            }


def _items(out: TextIO, items: Iterable[dict[str, Any]]) -> int:
    """Write JSON objects comma-separated, one a line; how many."""
    count = 0
    for count, item in enumerate(items, 1):
        out.write(("\n" if count == 1 else ",\n") + json.dumps(item))
    return count
