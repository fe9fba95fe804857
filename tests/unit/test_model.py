"""Turning logits into a mask at the photo's size: the serving path's own argmax, computed only
along the outlines, and the classes' regions gathered on the way."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from handler import upsampling
from handler.imaging import Letterbox
from handler.model import photo_labels
from handler.upsampling import Region, upsample_labels
from model_training.network import predict_labels


def torch_labels(margins: np.ndarray, height: int, width: int) -> np.ndarray:
    """The definition: bilinear upsampling of every pixel, then the argmax (background's margin
    over itself is 0)."""
    scores = torch.from_numpy(margins)[None]
    scores = torch.cat([torch.zeros_like(scores[:, :1]), scores], dim=1)
    up = F.interpolate(scores, size=(height, width), mode="bilinear", align_corners=False)
    return predict_labels(up)[0].numpy()


def regions_of(labels: np.ndarray) -> dict[int, Region]:
    found = {}
    for class_id in np.unique(labels):
        rows = np.flatnonzero((labels == class_id).any(axis=1))
        cols = np.flatnonzero((labels == class_id).any(axis=0))
        box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
        found[int(class_id)] = Region(int((labels == class_id).sum()), box)
    return found


def smooth_margins(classes: int, height: int, width: int, seed: int) -> np.ndarray:
    """Margins like a segmentation model's: large regions, a few outlines."""
    coarse = torch.randn(
        1,
        classes,
        max(2, height // 8),
        max(2, width // 8),
        generator=torch.Generator().manual_seed(seed),
    )
    return (4 * F.interpolate(coarse, size=(height, width), mode="bilinear"))[0].numpy()


@pytest.mark.parametrize("classes", [1, 2, 3, 5])
def test_photo_labels_are_the_argmax_of_the_upsampled_content(classes):
    logits = torch.randn(classes, 32, 32, generator=torch.Generator().manual_seed(classes))
    box = Letterbox.fit(90, 40, 32)
    content = F.interpolate(box.crop(logits)[None], size=(40, 90), mode="bilinear")
    expected = predict_labels(content)[0].numpy()
    labels, regions = photo_labels(logits, box, 40, 90)
    assert labels.dtype == np.uint8 and labels.shape == (40, 90)
    assert set(np.unique(labels)) == set(range(max(classes, 2)))
    assert (labels == expected).mean() > 0.999
    assert regions == regions_of(labels)


@pytest.mark.parametrize(
    ("grid", "photo"),
    [
        ((72, 96), (750, 1000)),  # a phone photo's shape, scaled up ~10x
        ((96, 72), (977, 731)),  # odd sizes: cells of unequal length
        ((48, 64), (30, 40)),  # a photo smaller than the model's grid
        ((5, 7), (5, 7)),  # same size
        ((1, 9), (3, 300)),  # a one-row grid
    ],
)
@pytest.mark.parametrize("classes", [1, 2])
def test_upsampled_labels_and_regions_equal_the_full_computation(grid, photo, classes):
    margins = smooth_margins(classes, *grid, seed=sum(photo))
    labels, regions = upsample_labels(margins, *photo)
    expected = torch_labels(margins, *photo)
    # only float rounding at exact ties may differ
    assert (labels == expected).mean() > 0.9999
    assert regions == regions_of(labels)


def test_noise_where_every_cell_is_an_outline_is_computed_in_chunks(monkeypatch):
    """No shortcut applies to noise; small chunks must give the same answer as one."""
    margins = np.random.default_rng(0).normal(size=(2, 40, 30)).astype(np.float32)
    whole, whole_regions = upsample_labels(margins, 400, 300)
    monkeypatch.setattr(upsampling, "CHUNK_VALUES", 5000)
    chunked, chunked_regions = upsample_labels(margins, 400, 300)
    assert np.array_equal(whole, chunked) and whole_regions == chunked_regions
    assert (whole == torch_labels(margins, 400, 300)).mean() > 0.9999
    assert whole_regions == regions_of(whole)
