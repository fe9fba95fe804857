"""Train a U-Net/ResNet34 to segment cats and dogs.

    petseg train --data data/synth --out runs/demo --epochs 8
    petseg train --data PATH --out runs/NAME --resume   # continue a run

Writes into ``--out``: ``last.pt`` (every epoch, for --resume), ``best.pt`` (best validation
mIoU), ``metrics.jsonl`` (one line per epoch) and ``curves.png``; with ``--progress FILE``, the
run's progress as model_training.progress describes it, rewritten after every epoch. The
steps, in reading order: :func:`setup` (data, model, optimiser, maybe a resumed state),
:func:`fit` (the epoch loop), :func:`checkpoint` (what an epoch leaves on disk).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from handler.model import autocast_dtype
from handler.spec import ModelSpec
from model_training.datasets import PetSegmentation, SkipLog, describe, find_samples
from model_training.exports import convert, is_export
from model_training.loops import make_loader, train_one_epoch, validate
from model_training.losses import SegmentationLoss
from model_training.network import build_training_model, choose_encoder_weights
from model_training.plots import plot_curves
from model_training.progress import TrainingProgress
from model_training.transforms import EvalTransform, TrainTransform
from model_training.utils import load_checkpoint, pick_device, save_checkpoint, seed_everything


def _score(value: float | None) -> str:
    """A metric for the log line; None when undefined (e.g. no pet pixel in the split)."""
    return "n/a" if value is None else f"{value:.4f}"


def warmup_cosine(total_steps: int, warmup: float = 0.1) -> Callable[[int], float]:
    """LR factor: linear warm-up (random-init BatchNorm needs it), then cosine to zero.

    A function of the step alone, so a resumed run, even one given more epochs, continues
    the curve instead of restarting it.
    """
    warmup_steps = max(1, round(total_steps * warmup))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def make_spec(args: argparse.Namespace, data: dict, weights: str | None) -> ModelSpec:
    return ModelSpec(
        classes=args.classes,
        encoder=args.encoder,
        input_size=args.input_size,
        training_data={
            **data,
            "border": args.border,
            "seed": args.seed,
            "encoder_weights": "random" if weights is None else Path(weights).name,
        },
    )


@dataclass
class Run:
    """Everything one training run holds between epochs."""

    spec: ModelSpec
    model: torch.nn.Module
    train_loader: DataLoader
    val_loader: DataLoader
    criterion: SegmentationLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    device: torch.device
    amp_dtype: torch.dtype | None
    start_epoch: int = 0
    best_miou: float = -1.0
    stale: int = 0
    """Epochs since the last validation gain (early stopping)."""

    def state(self, epoch: int, args: argparse.Namespace) -> dict[str, Any]:
        """The checkpoint: enough to resume exactly, and the spec to rebuild the model."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "best_miou": self.best_miou,
            "stale": self.stale,
            "spec": self.spec.to_dict(),
            "args": {k: str(v) for k, v in vars(args).items()},
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.start_epoch = state["epoch"] + 1
        self.best_miou, self.stale = state["best_miou"], state["stale"]


def make_datasets(
    args: argparse.Namespace, spec: ModelSpec
) -> tuple[PetSegmentation, PetSegmentation]:
    """Train and validation sets, decoded no smaller than the augmentation's zoom needs."""
    max_side = round(spec.input_size * TrainTransform.max_zoom)

    def dataset(split: str, transform) -> PetSegmentation:
        samples = find_samples(args.data, split, args.val_fraction, args.seed)
        if args.limit:
            samples = samples[: args.limit]
        return PetSegmentation(samples, transform, spec.classes, args.border, max_side)

    return dataset("train", TrainTransform(spec)), dataset("val", EvalTransform(spec))


def setup(args: argparse.Namespace) -> Run:
    """Data, model, optimiser and schedule; the state of ``last.pt`` with --resume."""
    seed_everything(args.seed)
    device = pick_device(args.device)
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if is_export(args.data):  # an annotation tool's export: its masks as a dataset in OUT/data
        converted = args.out / "data"
        read = convert(
            args.data,
            converted,
            args.classes,
            args.images,
            args.skip_bad_labels,
            args.val_fraction,
            args.seed,
        )
        print(f"export {args.data}: {read.summary()}; as a dataset in {converted}")
        args.data = converted
    resume = load_checkpoint(args.out / "last.pt") if args.resume else None
    if resume:  # the checkpoint holds the spec and every weight
        spec, weights = ModelSpec.from_dict(resume["spec"]), None
    else:
        data = describe(args.data)
        weights = choose_encoder_weights(args.encoder_weights, data["kind"], args.encoder)
        spec = make_spec(args, data, weights)
    train_set, val_set = make_datasets(args, spec)
    spec.training_data["images"] = {"train": len(train_set), "val": len(val_set)}
    # channels_last: ~25% faster convolutions on CPU (oneDNN) and on CUDA tensor cores.
    model = build_training_model(spec, weights)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=args.lr, weight_decay=args.weight_decay, fused=True
    )
    steps = args.epochs * math.ceil(len(train_set) / args.batch_size)
    amp_dtype = autocast_dtype(device, not args.no_amp)
    run = Run(
        spec=spec,
        model=model,
        train_loader=make_loader(train_set, args.batch_size, True, args.workers, args.seed),
        val_loader=make_loader(val_set, args.batch_size, False, args.workers),
        criterion=SegmentationLoss(args.dice_weight),
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps)),
        # Loss scaling is only needed for fp16; bf16 has fp32's range.
        scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
        device=device,
        amp_dtype=amp_dtype,
    )
    print(
        f"data: {len(train_set)} train / {len(val_set)} val images from {args.data}; "
        f"device {device} ({amp_dtype or torch.float32}); input {spec.input_size}px; "
        f"classes {spec.class_names}"
    )
    if resume:
        run.restore(resume)
        print(f"resumed from {args.out / 'last.pt'} at epoch {run.start_epoch}")
    return run


def run_epoch(run: Run, epoch: int, skips: SkipLog) -> dict[str, float]:
    """Train once over the data, validate, and update the best score; returns the log record."""
    record: dict[str, float] = {"epoch": epoch}
    record.update(
        train_one_epoch(
            run.model,
            run.train_loader,
            run.criterion,
            run.optimizer,
            run.scheduler,
            run.scaler,
            run.device,
            run.amp_dtype,
            epoch,
            skips,
        )
    )
    metrics, val_loss = validate(
        run.model,
        run.val_loader,
        run.criterion,
        run.device,
        run.spec.class_names,
        skips,
        f"epoch {epoch} val",
        run.amp_dtype,
    )
    results = metrics.compute()["dataset"]
    record.update(val_loss=val_loss, val_miou=results["miou"], val_fg_iou=results["fg_iou"])
    return record


def checkpoint(run: Run, record: dict[str, float], args: argparse.Namespace) -> bool:
    """Score the epoch, write ``last.pt`` (and ``best.pt`` on a gain) and the log line."""
    score = record["val_miou"] or 0.0
    improved = score > run.best_miou
    run.best_miou, run.stale = (score, 0) if improved else (run.best_miou, run.stale + 1)
    state = run.state(int(record["epoch"]), args)
    save_checkpoint(args.out / "last.pt", state)
    if improved:
        save_checkpoint(args.out / "best.pt", state)
    with (args.out / "metrics.jsonl").open("a") as log:
        log.write(json.dumps(record) + "\n")
    tqdm.write(
        f"epoch {record['epoch']}: loss {record['train_loss']:.4f} "
        f"val_loss {record['val_loss']:.4f} val mIoU {_score(record['val_miou'])} "
        f"fg IoU {_score(record['val_fg_iou'])} "
        f"({record['train_images_per_s']:.1f} img/s){' *best*' if improved else ''}"
    )
    return improved


def fit(run: Run, args: argparse.Namespace) -> dict[str, float]:
    """The epoch loop, with early stopping; returns the last epoch's record."""
    skips = SkipLog()
    log = args.out / "metrics.jsonl"
    if not args.resume:
        log.write_text("")
    progress = None
    if args.progress:
        done = [json.loads(line) for line in log.read_text().splitlines()]
        progress = TrainingProgress(args.progress, args.epochs, done)
    record: dict[str, float] = {}
    for epoch in range(run.start_epoch, args.epochs):
        # Each epoch's randomness depends on (seed, epoch) only, so a resumed run repeats
        # exactly what the interrupted one would have done.
        seed_everything(args.seed + epoch)
        run.train_loader.generator.manual_seed(args.seed + epoch)
        record = run_epoch(run, epoch, skips)
        checkpoint(run, record, args)
        if progress:
            progress.epoch_done(record)
        if args.patience and run.stale >= args.patience:
            print(f"early stop: no val mIoU gain in {args.patience} epochs")
            break
    if skips.summary():
        print(f"warning: {skips.summary()}")
    if progress:
        progress.finished()
    return record


def main(args: argparse.Namespace) -> dict[str, float]:
    run = setup(args)
    record = fit(run, args)
    plot_curves(args.out / "metrics.jsonl", args.out / "curves.png")
    print(f"best val mIoU {run.best_miou:.4f}; checkpoints in {args.out}")
    return record
