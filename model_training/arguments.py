"""The training commands' arguments, apart from the work they start: parsing them (and
`--help`) imports no torch, so `petseg train --help` or a mistyped flag answers at once, not
after the seconds torch and smp take to import. One function per command, named after it, adds
its arguments to a parser (model_training.commands.parser)."""

from __future__ import annotations

import argparse
from pathlib import Path

AUTO, NONE = "auto", "none"
"""--encoder-weights choices besides imagenet and a path: ImageNet for real data, random init
for synthetic data; or random init whatever the data."""


def synth(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", type=Path, help="folder to write the dataset into")
    p.add_argument("--n", type=int, default=2000, help="number of images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--jobs", type=int, default=2, help="worker processes")


def train(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="dataset folder (Oxford or Kaggle layout), or an annotation tool's export: Label "
        "Studio's JSON, or a folder with a COCO file (Label Studio's COCO export)",
    )
    p.add_argument("--images", type=Path, help="an export's photos (default: beside it)")
    p.add_argument(
        "--skip-bad-labels",
        action="store_true",
        help="leave out an export's tasks that cannot be read (unknown labels, empty masks, "
        "missing images), and say how many, instead of stopping",
    )
    p.add_argument("--out", type=Path, required=True, help="run folder for checkpoints and logs")
    p.add_argument("--classes", choices=["multiclass", "binary"], default="multiclass")
    p.add_argument(
        "--border",
        choices=["ignore", "pet"],
        default="ignore",
        help="what the Oxford trimap border band becomes",
    )
    p.add_argument("--encoder", default="resnet34")
    p.add_argument(
        "--encoder-weights",
        default=AUTO,
        help="'auto' (default): ImageNet weights for real data (downloaded once; stops at once "
        "when they cannot be), random init for synthetic data; 'imagenet'; 'none' (random "
        "init); or the path of a local torchvision ResNet state_dict",
    )
    p.add_argument("--input-size", type=int, default=256, help="model input side, multiple of 32")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--dice-weight", type=float, default=1.0)
    p.add_argument("--patience", type=int, default=5, help="early stop after N epochs without gain")
    p.add_argument("--val-fraction", type=float, default=0.1, help="of trainval (Oxford layout)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N samples per split")
    p.add_argument("--workers", type=int, default=1, help="data loader processes")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--no-amp",
        action="store_true",
        help="train in fp32 (default: fp16 on CUDA, bf16 on CPUs that have it)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument(
        "--progress",
        type=Path,
        help="also write the run's progress (epoch, loss, val mIoU, time left, the curve) to "
        "this JSON file after every epoch, for a page or a tool to show",
    )


def evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, required=True, help="checkpoint .pt or exported folder")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", choices=["test", "val", "train"], default="test")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--border", choices=["ignore", "pet"], default="ignore")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0, help="the training seed (picks the val split)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--samples", type=int, default=6, help="rows in predictions.png")
    p.add_argument("--device", default="auto")


def export(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, required=True, help="a training checkpoint (.pt)")
    p.add_argument("--out", type=Path, required=True, help="folder to write")
    p.add_argument("--metrics", type=Path, help="metrics.json from evaluate, kept in the spec")
    p.add_argument("--name", default="petseg")
    p.add_argument("--version", default="1.0")
