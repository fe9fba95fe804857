"""A label map as Label Studio regions: what its brush or polygon tool would have drawn.

Brush regions carry Label Studio's own RLE (an RGBA bitmap run-length coded, the mask in
alpha), encoded by label-studio-sdk's converter, the code Label Studio's exports are decoded
with; one region per class found. Polygon regions are one per connected region of a class, its
outer ring simplified to ``tolerance`` pixels (a Label Studio polygon has no holes), its points
in percent of the photo's width and height, as Label Studio stores them.
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from handler.mask_formats import polygons
from petseg.labelling.label_config import Project

DEFAULT_TOLERANCE = 1.0
"""Pixels a polygon's simplified outline may stray from the mask's edge."""


def results(labels: np.ndarray, project: Project, tolerance: float = DEFAULT_TOLERANCE) -> list:
    """The regions of every class of the project's labels found in an H x W label map."""
    if project.tool == "brush":
        return brush_regions(labels, project)
    return polygon_regions(labels, project, tolerance)


def brush_regions(labels: np.ndarray, project: Project) -> list[dict[str, Any]]:
    from label_studio_sdk.converter.brush import mask2rle  # ~0.4 s: only where masks go out

    regions = []
    for class_id, value in project.labels.items():
        mask = labels == class_id
        if mask.any():
            rle = mask2rle(mask.astype(np.uint8) * 255)
            region = {"format": "rle", "rle": rle, "brushlabels": [value]}
            regions.append(_region(project, labels.shape, region))
    return regions


def polygon_regions(labels: np.ndarray, project: Project, tolerance: float) -> list[dict[str, Any]]:
    height, width = labels.shape
    scale = np.array([100.0 / width, 100.0 / height])
    regions = []
    for class_id, value in project.labels.items():
        for shape in polygons(labels == class_id, tolerance):
            points = np.round(shape[0][:-1] * scale, 4).tolist()  # the outer ring, not closed
            region = {"points": points, "closed": True, "polygonlabels": [value]}
            regions.append(_region(project, labels.shape, region))
    return regions


def _region(project: Project, shape: tuple[int, ...], value: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": secrets.token_hex(5),
        "type": project.region_type,
        "from_name": project.from_name,
        "to_name": project.to_name,
        "original_width": int(shape[1]),
        "original_height": int(shape[0]),
        "image_rotation": 0,
        "origin": "prediction",
        "value": value,
    }
