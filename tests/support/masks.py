"""Reading the vector mask formats back into pixels, independently of the code that wrote them."""

from __future__ import annotations

import warnings

import numpy as np
from matplotlib.path import Path
from pycocotools import mask as coco_mask


def from_rle(rle: dict) -> np.ndarray:
    """A COCO RLE answer decoded by pycocotools, as a boolean H x W mask."""
    with warnings.catch_warnings():
        # pycocotools 2.0.x's Cython array wrapper predates numpy 2's `copy` keyword.
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        decoded = coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    return decoded.astype(bool)


def from_polygons(shapes: list, height: int, width: int) -> np.ndarray:
    """Pixels whose centre lies inside an outer ring and outside that polygon's holes."""
    yy, xx = np.mgrid[0:height, 0:width]
    centres = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], axis=1)
    filled = np.zeros(height * width, dtype=bool)
    for outer, *holes in shapes:
        inside = Path(outer).contains_points(centres)
        for hole in holes:
            inside &= ~Path(hole).contains_points(centres)
        filled |= inside
    return filled.reshape(height, width)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0
