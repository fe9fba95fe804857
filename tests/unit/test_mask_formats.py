"""COCO RLE and polygons of class masks: exact, as pycocotools and a rasteriser read them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as coco_mask

from handler.mask_formats import class_rles, polygons, rle_area, rle_box
from tests.support.masks import from_polygons, from_rle, iou

masks = st.tuples(st.integers(1, 24), st.integers(1, 24)).flatmap(lambda hw: arrays(np.bool_, hw))


label_maps = st.tuples(st.integers(1, 24), st.integers(1, 24)).flatmap(
    lambda hw: arrays(np.uint8, hw, elements=st.integers(0, 3))
)


@settings(max_examples=300, deadline=None)
@given(label_maps)
def test_each_class_rle_is_what_pycocotools_writes_for_its_mask(labels):
    rles = class_rles(labels, [0, 1, 2, 3, 4])
    assert sorted(rles) == sorted(np.unique(labels).tolist())  # absent classes left out
    for class_id, rle in rles.items():
        mask = labels == class_id
        reference = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert rle["counts"] == reference["counts"].decode()
        assert rle["size"] == list(labels.shape)
        assert np.array_equal(from_rle(rle), mask)
        assert rle_area(rle) == mask.sum()
        assert rle_box(rle) == coco_mask.toBbox(reference).tolist()


def test_a_phone_sized_label_map_gives_the_same_rle_as_pycocotools():
    yy, xx = np.mgrid[0:3000, 0:4000]
    labels = np.zeros((3000, 4000), np.uint8)
    labels[np.hypot(yy - 1500, xx - 1200) < 900] = 1
    labels[(yy > 400) & (xx > 2500) & (xx < 3990)] = 2
    labels[:, -1] = 2  # a class along the last column, meeting the next column's top
    rles = class_rles(labels, [1, 2])
    assert sorted(rles) == [1, 2]
    for class_id, rle in rles.items():
        reference = coco_mask.encode(np.asfortranarray((labels == class_id).view(np.uint8)))
        assert rle["counts"] == reference["counts"].decode()


@settings(max_examples=300, deadline=None)
@given(masks)
def test_polygons_fill_back_to_the_mask_exactly(mask):
    assert np.array_equal(from_polygons(polygons(mask), *mask.shape), mask)


def ring_mask(scale: int = 1) -> np.ndarray:
    """A thick ring with an island in its hole, and a separate blob in a corner (60x80 px at
    scale 1)."""
    yy, xx = np.mgrid[0 : 60 * scale, 0 : 80 * scale] / scale
    radius = np.hypot(yy - 30, xx - 35)
    mask = (radius < 25) & (radius > 12)
    mask |= radius < 5
    mask[(yy >= 50) & (xx >= 70)] = True
    return mask


def test_holes_islands_and_separate_regions():
    shapes = polygons(ring_mask())
    assert sorted(len(shape) for shape in shapes) == [1, 1, 2]  # island, blob, ring + its hole
    for shape in shapes:
        for ring in shape:
            assert ring[0] == ring[-1], "rings are closed"


def test_pixels_meeting_at_a_corner_stay_separate_polygons():
    mask = np.array([[1, 0], [0, 1]], dtype=bool)
    assert len(polygons(mask)) == 2
    assert np.array_equal(from_polygons(polygons(mask), 2, 2), mask)


@pytest.mark.parametrize(("tolerance", "kept"), [(0.5, 0.9), (1.0, 0.5), (2.0, 0.5)])
def test_tolerance_shrinks_rings_and_keeps_the_shape(tolerance, kept):
    mask = ring_mask(scale=5)
    exact, simple = polygons(mask), polygons(mask, tolerance)
    points = lambda shapes: sum(len(ring) for shape in shapes for ring in shape)  # noqa: E731
    assert points(simple) < kept * points(exact)
    assert iou(from_polygons(simple, *mask.shape), mask) > 0.97


def test_empty_and_full_masks():
    assert polygons(np.zeros((5, 5), bool)) == []
    assert polygons(np.ones((2, 3), bool)) == [[[[0, 0], [3, 0], [3, 2], [0, 2], [0, 0]]]]
    assert class_rles(np.zeros((2, 2), np.uint8), [1]) == {}
    assert class_rles(np.ones((2, 2), np.uint8), [1]) == {
        1: {
            "size": [2, 2],
            "counts": coco_mask.encode(np.ones((2, 2), np.uint8, order="F"))["counts"].decode(),
        }
    }
