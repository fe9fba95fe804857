"""The shadow's default side read from the user's answer: the handler's mask PNG, decoded in
plain Python, gives the very intervals of its COCO RLE, and anything else it cannot read gives
None (the proxy then asks TorchServe) instead of a wrong comparison."""

from __future__ import annotations

import base64
import json
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from frontend_server import mask_png
from frontend_server.masks import compare, from_answer, from_mask_png, from_rle
from handler.rendering import mask_png as handler_mask_png
from handler.rendering import rle_masks

NAMES = ["background", "cat", "dog"]
PALETTE = [[0, 0, 0], [255, 0, 0], [0, 0, 255]]
labels_arrays = st.tuples(st.integers(1, 40), st.integers(1, 40)).flatmap(
    lambda hw: arrays(np.uint8, hw, elements=st.integers(0, 2))
)


def rle_answer(labels: np.ndarray) -> dict:
    """The handler's ``rle`` answer for ``labels``."""
    height, width = labels.shape
    found = [
        {"id": class_id, "name": NAMES[class_id], "fraction": 0.0, "bbox": [0, 0, 0, 0]}
        for class_id in range(1, 3)
        if (labels == class_id).any()
    ]
    return {"width": width, "height": height, "masks": rle_masks(labels, found)}


def png_of(labels: np.ndarray, depth: int, filter_type: int = 0) -> bytes:
    """A palette PNG of ``labels`` written by hand at ``depth`` bits a pixel."""
    height, width = labels.shape
    per_byte = 8 // depth
    padded = np.zeros((height, -(-width // per_byte) * per_byte), np.uint8)
    padded[:, :width] = labels
    groups = padded.reshape(height, -1, per_byte).astype(np.uint16)
    shifts = np.array([8 - depth * (slot + 1) for slot in range(per_byte)], np.uint16)
    rows = (groups << shifts).sum(axis=2).astype(np.uint8)
    raw = b"".join(bytes([filter_type]) + row.tobytes() for row in rows)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, depth, 3, 0, 0, 0)
    plte = bytes(value for colour in PALETTE for value in colour)
    return (
        mask_png.SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"PLTE", plte)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@settings(max_examples=60, deadline=None)
@given(labels_arrays)
def test_the_handlers_mask_png_gives_the_intervals_of_its_rle(labels) -> None:
    from_png = from_mask_png(handler_mask_png(labels, PALETTE), NAMES)
    assert from_png == from_rle(rle_answer(labels))
    assert compare(from_png, from_rle(rle_answer(labels))).agreement == 1.0


@pytest.mark.parametrize("depth", [1, 2, 4, 8])
@settings(max_examples=20, deadline=None)
@given(labels=labels_arrays)
def test_every_palette_depth_reads_the_same(depth: int, labels) -> None:
    labels = np.minimum(labels, (1 << depth) - 1)
    expected = from_rle(rle_answer(labels))
    assert from_mask_png(png_of(labels, depth), NAMES) == expected


def test_a_json_answer_gives_its_masks_with_its_own_class_names() -> None:
    labels = np.zeros((30, 40), np.uint8)
    labels[5:20, 10:30] = 2
    answer = {
        "classes": [{"id": i, "name": name} for i, name in reversed(list(enumerate(NAMES)))],
        "mask_png": base64.b64encode(handler_mask_png(labels, PALETTE)).decode(),
    }
    found = from_answer("json", json.dumps(answer).encode(), None)
    assert found == from_rle(rle_answer(labels))
    assert set(found.classes) == {"dog"}


def test_rle_and_labels_answers_are_read_as_they_are() -> None:
    labels = np.eye(12, dtype=np.uint8)
    body = json.dumps(rle_answer(labels)).encode()
    assert from_answer("rle", body, None) == from_answer("labels", body, None) is not None


@pytest.mark.parametrize(
    ("output", "body", "names"),
    [
        ("overlay", b"\xff\xd8 a jpeg", NAMES),
        ("polygons", b'{"type": "FeatureCollection"}', NAMES),
        ("mask", handler_mask_png(np.ones((4, 4), np.uint8), PALETTE), None),
        ("mask", b"not a png", NAMES),
        ("mask", handler_mask_png(np.ones((9, 9), np.uint8), PALETTE)[:-30], NAMES),
        ("mask", png_of(np.ones((5, 5), np.uint8), 8, filter_type=1), NAMES),
        ("mask", handler_mask_png(np.full((5, 5), 2, np.uint8), PALETTE), NAMES[:2]),
        ("json", b'{"classes": [], "mask_png": "***"}', None),
        ("json", b"{truncated", None),
        ("rle", b'{"width": 4}', None),
    ],
    ids=[
        "overlay",
        "polygons",
        "mask-without-names",
        "not-png",
        "truncated",
        "filtered",
        "id-beyond-names",
        "bad-base64",
        "bad-json",
        "rle-without-masks",
    ],
)
def test_what_cannot_be_read_gives_none_so_the_default_is_asked(output, body, names) -> None:
    assert from_answer(output, body, names) is None
