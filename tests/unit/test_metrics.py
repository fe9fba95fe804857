import numpy as np
import pytest
import torch

from model_training.metrics import SegmentationMetrics, confusion

NAMES = ["background", "cat", "dog"]


def target_with_cat_quarter():
    """8x8: background, a 4x4 cat (25% of pixels), one ignored pixel in the background."""
    t = torch.zeros(1, 8, 8, dtype=torch.long)
    t[0, :4, :4] = 1
    t[0, 7, 7] = 255
    return t


def test_perfect_prediction_scores_one_and_absent_class_is_undefined():
    target = target_with_cat_quarter()
    metrics = SegmentationMetrics(NAMES)
    metrics.update(target, target.clamp(max=2))
    result = metrics.compute()
    for level in ("dataset", "per_image"):
        r = result[level]
        assert r["iou"] == {"background": 1.0, "cat": 1.0, "dog": None}
        assert r["miou"] == r["mean_dice"] == r["fg_iou"] == r["pixel_accuracy"] == 1.0
    assert result["num_pixels"] == 63


def test_empty_prediction_gives_known_values():
    target = target_with_cat_quarter()
    metrics = SegmentationMetrics(NAMES)
    metrics.update(target, torch.zeros_like(target))
    r = metrics.compute()["dataset"]
    assert r["iou"]["background"] == pytest.approx(47 / 63, abs=1e-6)
    assert r["iou"]["cat"] == 0.0 and r["iou"]["dog"] is None
    assert r["miou"] == pytest.approx((47 / 63) / 2, abs=1e-6)
    assert r["dice"]["background"] == pytest.approx(2 * 47 / (2 * 47 + 16), abs=1e-6)
    assert r["fg_iou"] == 0.0 and r["fg_dice"] == 0.0
    assert r["pixel_accuracy"] == pytest.approx(47 / 63, abs=1e-6)


def test_cat_dog_confusion_is_still_a_foreground_hit():
    target = target_with_cat_quarter()
    pred = torch.where(target == 1, 2, 0)
    r = SegmentationMetrics(NAMES)
    r.update(target, pred)
    out = r.compute()["dataset"]
    assert out["fg_iou"] == 1.0 and out["iou"]["cat"] == 0.0 and out["iou"]["dog"] == 0.0


def test_dataset_and_per_image_differ_as_defined():
    """A perfect big image and a wrong small one: micro is dominated by the big one."""
    metrics = SegmentationMetrics(["background", "pet"])
    big = torch.ones(1, 10, 10, dtype=torch.long)
    small = torch.ones(1, 10, 10, dtype=torch.long)
    small[0, 1:] = 255  # only 10 labelled pixels
    metrics.update(big, big)
    metrics.update(small, torch.zeros_like(small))
    out = metrics.compute()
    assert out["dataset"]["fg_iou"] == pytest.approx(100 / 110, abs=1e-6)
    assert out["per_image"]["fg_iou"] == pytest.approx(0.5)


def test_ignore_pixels_never_count():
    target = torch.full((1, 4, 4), 255)
    assert confusion(target, torch.zeros_like(target), 3).sum() == 0
    metrics = SegmentationMetrics(NAMES)
    metrics.update(target, torch.ones_like(target))
    assert np.isnan(metrics.miou)
