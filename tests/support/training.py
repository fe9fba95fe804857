"""Tiny datasets and training runs: small enough for tests, real enough to exercise the code."""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from model_training import commands
from model_training.datasets import labels_from_trimap, oxford_samples


def write_kaggle_layout(oxford: Path, root: Path) -> Path:
    """The same images in the Kaggle layout: class-id masks and train/val/test CSVs."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    splits = {split: oxford_samples(oxford, split, 0.2, 0) for split in ("train", "val", "test")}
    for split, samples in splits.items():
        with (root / f"{split}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["Image", "Species"])
            for s in samples:
                writer.writerow([s.name, s.species])
                shutil.copy(s.image, root / "images" / s.image.name)
                trimap = np.asarray(Image.open(s.mask))
                labels = labels_from_trimap(trimap, s.species, "multiclass", "ignore")
                Image.fromarray(labels).save(root / "masks" / f"{s.name}.png")
    return root


def tiny_train_argv(data: Path, out: Path, *extra: str) -> list[str]:
    """`petseg train`'s arguments for a run small enough for tests: 16 images at 64 px, no
    loader processes."""
    argv = ["--data", str(data), "--out", str(out), "--input-size", "64", "--batch-size", "8"]
    return [*argv, "--limit", "16", "--workers", "0", "--lr", "1e-3", *extra]


def tiny_train_args(data: Path, out: Path, *extra: str) -> argparse.Namespace:
    """``tiny_train_argv`` parsed, for ``train.main`` in the test's own process."""
    return commands.parser("train").parse_args(tiny_train_argv(data, out, *extra))
