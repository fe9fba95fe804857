"""Class ids at a photo's own size from the model's low-resolution scores, computed only where
the classes meet.

The answer's mask is the argmax of the class scores upsampled bilinearly to the photo's size
(torch's ``F.interpolate(mode="bilinear", align_corners=False)``). Bilinear interpolation is a
convex combination of the four nearest grid values, and a class that has the largest score at
all four has the largest at every point between them. So a pixel whose grid cell has one class
at its four corners takes that class with no arithmetic at all; only the pixels of cells the
classes disagree on (the outlines: a few percent of a 12-megapixel photo) are interpolated.
Interpolating every pixel of a 12 MP photo took ~200 ms on one core; this takes ~20.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

CHUNK_VALUES = 1 << 22
"""Interpolated values computed at once (16 MB of float32): bounds the transient memory."""


def label_grid(margins: np.ndarray) -> np.ndarray:
    """K x ... margins of classes 1..K over class 0 -> uint8 class ids (ties: lower class)."""
    labels = np.zeros(margins.shape[1:], dtype=np.uint8)
    best = np.zeros(margins.shape[1:], dtype=margins.dtype)
    for class_id, margin in enumerate(margins, start=1):
        labels[margin > best] = class_id
        np.maximum(best, margin, out=best)
    return labels


def source_cells(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray]:
    """For each output index along one axis: the grid index at or before it, and the weight of
    the grid index after it (torch's bilinear source index, align_corners=False)."""
    scale = in_size / out_size
    source = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0.0)
    low = np.minimum(source.astype(np.int64), in_size - 1)
    return low, (source - low).astype(np.float32)


class _Axis:
    """One axis of the upsampling: which output indices fall in each grid cell, and weights."""

    def __init__(self, out_size: int, in_size: int) -> None:
        self.cell, self.weight = source_cells(out_size, in_size)
        self.count = np.bincount(self.cell, minlength=in_size)
        self.start = np.concatenate([[0], np.cumsum(self.count)[:-1]])
        self.longest = int(self.count.max())

    def block(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Output indices (padded to the longest cell), their validity and their weights."""
        offsets = np.arange(self.longest)
        valid = offsets < self.count[cells][:, None]
        index = np.minimum(self.start[cells][:, None] + offsets, len(self.cell) - 1)
        return index, valid, self.weight[index]


@dataclass(frozen=True)
class Region:
    """Where one class lies in a label map: its pixel count and bounding box [x0, y0, x1, y1)."""

    pixels: int
    box: tuple[int, int, int, int]


class _Regions:
    """Pixel counts and bounding boxes per class, gathered while the labels are made: counting
    a 12-megapixel map afterwards (histogram, then a bounding box per class) took ~30 ms."""

    def __init__(self) -> None:
        self.pixels: dict[int, int] = {}
        self.boxes: dict[int, tuple[int, int, int, int]] = {}

    def add(self, class_id: int, pixels: int, x: np.ndarray, y: np.ndarray) -> None:
        """``pixels`` more of ``class_id``, spanning the inclusive ranges of ``x`` and ``y``."""
        if pixels == 0:
            return
        box = (int(x.min()), int(y.min()), int(x.max()) + 1, int(y.max()) + 1)
        self.pixels[class_id] = self.pixels.get(class_id, 0) + pixels
        old = self.boxes.get(class_id, box)
        self.boxes[class_id] = (
            min(old[0], box[0]),
            min(old[1], box[1]),
            max(old[2], box[2]),
            max(old[3], box[3]),
        )

    def found(self) -> dict[int, Region]:
        return {c: Region(self.pixels[c], self.boxes[c]) for c in sorted(self.pixels)}


def upsample_labels(
    margins: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, dict[int, Region]]:
    """K x h x w float32 margins (classes 1..K over background) -> height x width uint8 labels,
    the argmax of the bilinearly upsampled scores, and the region of every class found."""
    classes, grid_h, grid_w = margins.shape
    # one more row and column, copies of the last: torch clamps the second neighbour there
    grid = np.pad(margins, ((0, 0), (0, 1), (0, 1)), mode="edge")
    corners = label_grid(grid)
    rows, cols = _Axis(height, grid_h), _Axis(width, grid_w)
    first = corners[:-1, :-1]
    labels = np.repeat(np.repeat(first, rows.count, axis=0), cols.count, axis=1)
    mixed = (first != corners[1:, :-1]) | (first != corners[:-1, 1:]) | (first != corners[1:, 1:])
    covers = (rows.count > 0)[:, None] & (cols.count > 0)[None, :]
    regions = _Regions()
    uniform = ~mixed & covers
    areas = np.outer(rows.count, cols.count)
    for class_id in range(classes + 1):
        cells = uniform & (first == class_id)
        if cells.any():
            i, j = np.nonzero(cells)
            y = np.concatenate([rows.start[i], rows.start[i] + rows.count[i] - 1])
            x = np.concatenate([cols.start[j], cols.start[j] + cols.count[j] - 1])
            regions.add(class_id, int(areas[cells].sum()), x, y)
    cell_rows, cell_cols = np.nonzero(mixed & covers)
    per_cell = classes * rows.longest * cols.longest
    step = max(1, CHUNK_VALUES // per_cell)
    flat = labels.reshape(-1)
    for begin in range(0, len(cell_rows), step):
        i, j = cell_rows[begin : begin + step], cell_cols[begin : begin + step]
        y, y_valid, wy = rows.block(i)
        x, x_valid, wx = cols.block(j)
        top = grid[:, i, j][..., None] * (1 - wx) + grid[:, i, j + 1][..., None] * wx
        bottom = grid[:, i + 1, j][..., None] * (1 - wx) + grid[:, i + 1, j + 1][..., None] * wx
        wy = wy[None, :, :, None]
        values = top[:, :, None, :] * (1 - wy) + bottom[:, :, None, :] * wy
        valid = y_valid[:, :, None] & x_valid[:, None, :]
        block = label_grid(values)[valid]
        y_all = np.broadcast_to(y[:, :, None], valid.shape)[valid]
        x_all = np.broadcast_to(x[:, None, :], valid.shape)[valid]
        flat[y_all * width + x_all] = block
        for class_id in np.unique(block):
            where = block == class_id
            regions.add(int(class_id), int(where.sum()), x_all[where], y_all[where])
    return labels, regions.found()


def upsample_everywhere(
    margins: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, dict[int, Region]]:
    """:func:`upsample_labels` the plain way: every pixel interpolated, then the regions
    counted on the label map (``upsample_along_outlines: false``)."""
    scores = F.interpolate(
        torch.from_numpy(margins)[None], size=(height, width), mode="bilinear", align_corners=False
    )[0].numpy()
    labels = label_grid(scores)
    regions = _Regions()
    for class_id in np.unique(labels):
        rows = np.flatnonzero((labels == class_id).any(axis=1))
        cols = np.flatnonzero((labels == class_id).any(axis=0))
        pixels = int(np.count_nonzero(labels == class_id))
        regions.add(int(class_id), pixels, cols[[0, -1]], rows[[0, -1]])
    return labels, regions.found()
