"""A class mask as the formats other tools read: COCO RLE and polygons with holes.

Both are exact at the photo's own size. RLE is COCO's compressed string, the counts running
down the columns, written by pycocotools itself. Polygons follow the pixel edges, so
filling them back (pixel centres inside the outer ring and outside its holes) gives the mask
again; a tolerance > 0 simplifies each ring (Douglas-Peucker) for smaller answers.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from pycocotools import mask as coco_mask

Corner = tuple[int, int]
"""A pixel corner (x, y): pixel (row r, column c) spans corners (c, r) to (c + 1, r + 1)."""
Ring = list[list[float]]
"""Closed ring of [x, y] pixel-corner coordinates (x right, y down), first point repeated."""


def class_rles(labels: np.ndarray, class_ids: Iterable[int]) -> dict[int, dict[str, object]]:
    """COCO RLE of each class of ``class_ids`` found in an H x W label map (absent classes left
    out): {"size": [H, W], "counts": compressed string}, the string written by pycocotools.

    COCO's runs go down the columns. pycocotools encodes one binary mask at a time, in column
    order: for a 12 MP map a transposed copy and a pass per class, ~15 ms. Here every class's
    runs come from where the map changes, found in one pass in its own row order, and only
    those few thousand positions are sorted down the columns (~2 ms); pycocotools then
    compresses each class's run lengths.
    """
    height, width = labels.shape
    starts, values = _column_runs(labels)
    found: dict[int, dict[str, object]] = {}
    for class_id in class_ids:
        inside = values == class_id
        if not inside.any():
            continue
        edges = starts[np.flatnonzero(inside[1:] != inside[:-1]) + 1]
        counts = np.diff(edges, prepend=0, append=height * width)
        if inside[0]:  # COCO's counts begin with a run of zeros, here an empty one
            counts = np.concatenate(([0], counts))
        uncompressed = {"size": [height, width], "counts": counts.tolist()}
        encoded = coco_mask.frPyObjects(uncompressed, height, width)
        found[class_id] = {"size": [height, width], "counts": encoded["counts"].decode()}
    return found


def _column_runs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each run of one label starts, as positions in column order (down each column,
    the columns left to right), and the run's label."""
    height, width = labels.shape
    down = np.flatnonzero(labels[1:] != labels[:-1])  # row r to r + 1 of a column differ
    across = np.flatnonzero(labels[-1, :-1] != labels[0, 1:])  # a column's end to the next's top
    down_starts = (down % width) * height + down // width + 1
    starts = np.concatenate(([0], down_starts, (across + 1) * height))
    starts.sort()
    return starts, labels[starts % height, starts // height]


def rle_area(rle: dict[str, object]) -> int:
    """Pixels inside a COCO RLE, counted from its runs."""
    return int(coco_mask.area(_compressed(rle)))


def rle_box(rle: dict[str, object]) -> list[int]:
    """COCO's bounding box [x, y, width, height] of an RLE, from its runs."""
    return [int(value) for value in coco_mask.toBbox(_compressed(rle))]


def _compressed(rle: dict[str, object]) -> dict[str, object]:
    """The form pycocotools reads: ``counts`` as bytes."""
    counts = rle["counts"]
    return {
        "size": rle["size"],
        "counts": counts if isinstance(counts, bytes) else str(counts).encode(),
    }


# -- polygons -------------------------------------------------------------------------------
RIGHT_TURN = {(1, 0): (0, 1), (0, 1): (-1, 0), (-1, 0): (0, -1), (0, -1): (1, 0)}
"""Walking with the region on the right (x right, y down): east -> south -> west -> north."""


def polygons(mask: np.ndarray, tolerance: float = 0.0) -> list[list[Ring]]:
    """Polygons of a boolean mask: each a list of rings, the outer ring first, then its holes."""
    rings = [_corners(ring) for ring in _trace(mask)]
    outers = [r for r in rings if _area(r) > 0]
    shapes: list[list[np.ndarray]] = [[outer] for outer in outers]
    for hole in (r for r in rings if _area(r) < 0):
        point = _inside_point(hole)
        owners = [i for i, outer in enumerate(outers) if _contains(outer, point)]
        if owners:  # the smallest outer ring around it
            shapes[min(owners, key=lambda i: _area(outers[i]))].append(hole)
    return [[_closed(_simplify(ring, tolerance)) for ring in shape] for shape in shapes]


def _edges(mask: np.ndarray) -> dict[Corner, list[Corner]]:
    """Directed unit edges between region and background pixels, region on the right."""
    padded = np.pad(mask.astype(bool), 1)
    inner = padded[1:-1, 1:-1]
    out: dict[Corner, list[Corner]] = {}
    # (neighbour offset, start corner, end corner) for the pixel at column x, row y
    sides = (
        ((-1, 0), (0, 0), (1, 0)),  # top: walk east
        ((0, 1), (1, 0), (1, 1)),  # right: walk south
        ((1, 0), (1, 1), (0, 1)),  # bottom: walk west
        ((0, -1), (0, 1), (0, 0)),  # left: walk north
    )
    h, w = inner.shape
    for (dy, dx), (sx, sy), (ex, ey) in sides:
        neighbour = padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        rows, cols = np.nonzero(inner & ~neighbour)
        for y, x in zip(rows.tolist(), cols.tolist(), strict=True):
            out.setdefault((x + sx, y + sy), []).append((x + ex, y + ey))
    return out


def _trace(mask: np.ndarray) -> list[list[Corner]]:
    """Chain the edges into closed rings. Where two regions touch only at a corner, the walk
    turns right, so pixels that meet diagonally belong to different rings (4-connectivity)."""
    out = _edges(mask)
    rings = []
    while out:
        start = next(iter(out))
        first = out[start][-1]
        _take(out, start, first)
        ring, here, direction = [start], first, (first[0] - start[0], first[1] - start[1])
        while True:
            ring.append(here)
            options = out.get(here, []) + ([first] if here == start else [])
            step = _next_step(here, direction, options)
            if here == start and step == first:
                break
            _take(out, here, step)
            direction, here = (step[0] - here[0], step[1] - here[1]), step
        rings.append(ring[:-1])
    return rings


def _take(out: dict[Corner, list[Corner]], corner: Corner, end: Corner) -> None:
    out[corner].remove(end)
    if not out[corner]:
        del out[corner]


def _next_step(here: Corner, direction: Corner, options: list[Corner]) -> Corner:
    """The right turn if there is one, else straight on, else the left turn."""
    right = RIGHT_TURN[direction]
    left = (-right[0], -right[1])
    for dx, dy in (right, direction, left):
        if (here[0] + dx, here[1] + dy) in options:
            return here[0] + dx, here[1] + dy
    raise AssertionError(f"the boundary is open at {here}")


def _corners(ring: list[Corner]) -> np.ndarray:
    """The ring's points where its direction changes (n x 2 floats, not closed)."""
    points = np.asarray(ring, dtype=np.float64)
    before, after = points - np.roll(points, 1, axis=0), np.roll(points, -1, axis=0) - points
    turns = (before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]) != 0
    return points[turns]


def _area(ring: np.ndarray) -> float:
    """Shoelace area: positive for outer rings, negative for holes (region on the right)."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _inside_point(hole: np.ndarray) -> tuple[float, float]:
    """The centre of the region pixel beside the hole's first edge (on the walk's right)."""
    (x0, y0), (x1, y1) = hole[0], hole[1]
    dx, dy = np.sign(x1 - x0), np.sign(y1 - y0)
    rx, ry = RIGHT_TURN[(int(dx), int(dy))]
    return x0 + 0.5 * dx + 0.5 * rx, y0 + 0.5 * dy + 0.5 * ry


def _contains(ring: np.ndarray, point: tuple[float, float]) -> bool:
    """Even-odd ray casting; pixel centres never lie on a ring of pixel edges."""
    x, y = point
    x0, y0 = ring[:, 0], ring[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return bool(np.count_nonzero(crosses & (x < at)) % 2)


def _simplify(ring: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker on a closed ring, split at its first point and the point farthest from
    it; rings that would collapse below a triangle are kept as they are."""
    if tolerance <= 0 or len(ring) < 4:
        return ring
    far = int(np.argmax(np.hypot(*(ring - ring[0]).T)))
    halves = (ring[: far + 1], np.vstack([ring[far:], ring[:1]]))
    kept = np.vstack([_douglas_peucker(half, tolerance)[:-1] for half in halves])
    return kept if len(kept) >= 3 else ring


def _douglas_peucker(points: np.ndarray, tolerance: float) -> np.ndarray:
    start, end = points[0], points[-1]
    if len(points) < 3:
        return points
    chord = end - start
    length = float(np.hypot(*chord))
    offsets = points - start
    if length:
        distances = np.abs(chord[0] * offsets[:, 1] - chord[1] * offsets[:, 0]) / length
    else:
        distances = np.hypot(offsets[:, 0], offsets[:, 1])
    worst = int(np.argmax(distances))
    if distances[worst] <= tolerance:
        return np.vstack([start, end])
    left = _douglas_peucker(points[: worst + 1], tolerance)
    return np.vstack([left[:-1], _douglas_peucker(points[worst:], tolerance)])


def _closed(ring: np.ndarray) -> Ring:
    points = ring.tolist()
    return [*points, points[0]]
