"""Evaluate a checkpoint or an exported model on a held-out split.

    python -m model_training evaluate --model runs/demo/best.pt --data data/synth \
        --out runs/demo/eval

Prints a table and writes ``metrics.json`` (dataset-level and mean per-image scores) and
``predictions.png`` (image / truth / prediction for a few samples) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from handler.imaging import colorize
from handler.model import load_exported
from handler.spec import ModelSpec
from model_training.datasets import PetSegmentation, SkipLog, find_samples
from model_training.loops import make_loader, validate
from model_training.losses import SegmentationLoss
from model_training.network import predict_labels
from model_training.plots import plot_predictions
from model_training.transforms import EvalTransform
from model_training.utils import model_from_checkpoint, pick_device


def load_any(path: Path) -> tuple[torch.nn.Module, ModelSpec]:
    """A training checkpoint (.pt) or an exported model directory."""
    if Path(path).is_dir():
        return load_exported(path)
    model, spec, _ = model_from_checkpoint(path)
    return model, spec


def format_table(results: dict) -> str:
    """Per-class IoU/Dice and the summary scores, dataset-level and per image."""
    data, per_image = results["dataset"], results["per_image"]
    fmt = lambda v: "   n/a" if v is None else f"{v:6.4f}"  # noqa: E731
    lines = [
        f"{'':22}{'dataset':>16}{'per image':>18}",
        f"{'':22}{'IoU   Dice':>16}{'IoU   Dice':>18}",
    ]
    for name in data["iou"]:
        lines.append(
            f"{name:22}  {fmt(data['iou'][name])} {fmt(data['dice'][name])}    "
            f"{fmt(per_image['iou'][name])} {fmt(per_image['dice'][name])}"
        )
    lines.append(
        f"{'mean (mIoU, mDice)':22}  {fmt(data['miou'])} {fmt(data['mean_dice'])}    "
        f"{fmt(per_image['miou'])} {fmt(per_image['mean_dice'])}"
    )
    lines.append(
        f"{'foreground (pet)':22}  {fmt(data['fg_iou'])} {fmt(data['fg_dice'])}    "
        f"{fmt(per_image['fg_iou'])} {fmt(per_image['fg_dice'])}"
    )
    lines.append(
        f"{'pixel accuracy':22}  {fmt(data['pixel_accuracy'])}{'':11}"
        f"{fmt(per_image['pixel_accuracy'])}"
    )
    lines.append(f"{results['num_images']} images, {results['num_pixels']} labelled pixels")
    return "\n".join(lines)


def sample_panels(model, dataset: PetSegmentation, spec: ModelSpec, count: int) -> list:
    """(image, truth, prediction) colour panels for the first ``count`` readable samples."""
    mean, std = np.array(spec.mean)[:, None, None], np.array(spec.std)[:, None, None]
    rows = []
    for index in range(len(dataset)):
        item = dataset[index]
        if not isinstance(item, tuple):
            continue
        image, truth = item
        with torch.inference_mode():
            pred = predict_labels(model(image[None].to(next(model.parameters()).device)))[0]
        rgb = np.clip((image.numpy() * std + mean) * 255, 0, 255).astype(np.uint8)
        rows.append(
            (
                rgb.transpose(1, 2, 0),
                colorize(truth.numpy(), spec.palette),
                colorize(pred.cpu().numpy(), spec.palette),
            )
        )
        if len(rows) == count:
            break
    return rows


def main(args: argparse.Namespace) -> dict:
    device = pick_device(args.device)
    model, spec = load_any(args.model)
    model.to(device)
    samples = find_samples(args.data, args.split, args.val_fraction, args.seed)
    dataset = PetSegmentation(samples, EvalTransform(spec), spec.classes, args.border)
    loader = make_loader(dataset, args.batch_size, False, args.workers)
    skips = SkipLog()
    metrics, loss = validate(model, loader, SegmentationLoss(), device, spec.class_names, skips)
    results = {
        "split": args.split,
        "data": str(args.data),
        "loss": round(loss, 6),
        **metrics.compute(),
    }
    if skips.summary():
        print(f"warning: {skips.summary()}")
        results["skipped"] = len(skips.names)
    print(format_table(results))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    plot_predictions(
        sample_panels(model, dataset, spec, args.samples), args.out / "predictions.png"
    )
    print(f"wrote {args.out / 'metrics.json'} and {args.out / 'predictions.png'}")
    return results
