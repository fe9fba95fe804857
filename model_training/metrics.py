"""Segmentation metrics from confusion matrices, ignore pixels excluded.

Dataset-level (micro) numbers come from one confusion matrix summed over all pixels;
per-image numbers average each image's own IoU/Dice over the images where they are defined
(a class absent from both truth and prediction of an image says nothing about that image).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import numpy as np
import torch

from handler.spec import IGNORE_INDEX


def confusion(target: torch.Tensor, pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """num_classes x num_classes counts, rows = truth, columns = prediction."""
    valid = target != IGNORE_INDEX
    index = target[valid].long() * num_classes + pred[valid].long()
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def _scores(cm: np.ndarray) -> dict[str, np.ndarray | float]:
    """IoU and Dice per class (NaN where undefined), pixel accuracy, foreground IoU/Dice."""
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (tp + fp + fn)
        dice = 2 * tp / (2 * tp + fp + fn)
        acc = tp.sum() / cm.sum()
        fg = np.array([[cm[0, 0], cm[0, 1:].sum()], [cm[1:, 0].sum(), cm[1:, 1:].sum()]])
        fg_iou = fg[1, 1] / (fg[1, 1] + fg[0, 1] + fg[1, 0])
        fg_dice = 2 * fg[1, 1] / (2 * fg[1, 1] + fg[0, 1] + fg[1, 0])
    return {"iou": iou, "dice": dice, "pixel_accuracy": acc, "fg_iou": fg_iou, "fg_dice": fg_dice}


class SegmentationMetrics:
    """Accumulates dataset-level and per-image scores over batches."""

    def __init__(self, class_names: list[str]) -> None:
        self.class_names = class_names
        self.num_classes = len(class_names)
        self.total = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.per_image: list[dict[str, np.ndarray | float]] = []

    def update(self, target: torch.Tensor, pred: torch.Tensor) -> None:
        """Add a batch of N x H x W label maps."""
        for t, p in zip(target, pred, strict=True):
            cm = confusion(t, p, self.num_classes).cpu().numpy()
            self.total += cm
            self.per_image.append(_scores(cm))

    @property
    def miou(self) -> float:
        with _quiet_nanmean():
            return float(np.nanmean(_scores(self.total)["iou"]))

    def compute(self) -> dict[str, object]:
        """JSON-ready results: ``dataset`` (micro) and ``per_image`` (mean over images)."""
        return {
            "dataset": self._summary(_scores(self.total)),
            "per_image": self._summary(self._mean_per_image()),
            "num_images": len(self.per_image),
            "num_pixels": int(self.total.sum()),
        }

    def _mean_per_image(self) -> dict[str, np.ndarray | float]:
        keys = ("iou", "dice", "pixel_accuracy", "fg_iou", "fg_dice")
        out = {}
        for key in keys:
            values = np.array([s[key] for s in self.per_image], dtype=np.float64)
            with _quiet_nanmean():
                out[key] = np.nanmean(values, axis=0) if len(values) else np.nan
        return out

    def _summary(self, scores: dict[str, np.ndarray | float]) -> dict[str, object]:
        iou, dice = np.atleast_1d(scores["iou"]), np.atleast_1d(scores["dice"])
        with _quiet_nanmean():
            return {
                "iou": {n: _num(v) for n, v in zip(self.class_names, iou, strict=True)},
                "dice": {n: _num(v) for n, v in zip(self.class_names, dice, strict=True)},
                "miou": _num(np.nanmean(iou)),
                "mean_dice": _num(np.nanmean(dice)),
                "fg_iou": _num(scores["fg_iou"]),
                "fg_dice": _num(scores["fg_dice"]),
                "pixel_accuracy": _num(scores["pixel_accuracy"]),
            }


def _num(value: float) -> float | None:
    """JSON has no NaN: an undefined score is null."""
    return None if np.isnan(value) else round(float(value), 6)


@contextlib.contextmanager
def _quiet_nanmean() -> Iterator[None]:
    """np.nanmean warns on all-NaN slices; for us that just means 'undefined'."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
