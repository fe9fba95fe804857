"""PNG figures: training curves and prediction grids (matplotlib, headless)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def plot_curves(log_path: Path, out: Path) -> None:
    """Loss (train/val) and validation mIoU / foreground IoU per epoch."""
    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line]
    if not rows:
        return
    epochs = [r["epoch"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [r["train_loss"] for r in rows], label="train")
    left.plot(epochs, [r["val_loss"] for r in rows], label="val")
    left.set(xlabel="epoch", ylabel="loss", title="loss")
    nan = float("nan")  # undefined scores are null in the log
    right.plot(
        epochs, [r["val_miou"] if r["val_miou"] is not None else nan for r in rows], label="mIoU"
    )
    right.plot(
        epochs,
        [r["val_fg_iou"] if r["val_fg_iou"] is not None else nan for r in rows],
        label="foreground IoU",
    )
    right.set(xlabel="epoch", ylim=(0, 1), title="validation")
    for ax in (left, right):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def plot_predictions(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], out: Path) -> None:
    """A grid with one row per sample: image, truth, prediction (all HxWx3 uint8)."""
    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 3 * len(rows)), squeeze=False)
    for ax_row, panels in zip(axes, rows, strict=True):
        for ax, panel, title in zip(ax_row, panels, ("image", "truth", "prediction"), strict=True):
            ax.imshow(panel)
            ax.set_title(title)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
