"""Train a U-Net/ResNet34 to segment cats and dogs.

    python -m model_training train --data data/synth --out runs/demo --epochs 8
    python -m model_training train --data PATH --out runs/NAME --resume   # continue a run

Writes into ``--out``: ``last.pt`` (every epoch, for --resume), ``best.pt`` (best validation
mIoU), ``metrics.jsonl`` (one line per epoch) and ``curves.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from model_training.datasets import PetSegmentation, SkipLog, collate, describe, find_samples
from model_training.losses import SegmentationLoss
from model_training.metrics import SegmentationMetrics
from model_training.model import autocast_dtype, build_model, predict_labels
from model_training.plots import plot_curves
from model_training.spec import ModelSpec
from model_training.transforms import EvalTransform, TrainTransform
from model_training.utils import load_checkpoint, pick_device, save_checkpoint, seed_everything


def make_loader(
    dataset: PetSegmentation, batch_size: int, shuffle: bool, workers: int, seed: int = 0
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        collate_fn=collate,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )


def train_one_epoch(
    model, loader, criterion, optimizer, scheduler, scaler, device, amp_dtype, epoch, skips: SkipLog
) -> dict[str, float]:
    """One pass over the training set; returns mean loss and throughput."""
    model.train()
    total_loss, seen, start = 0.0, 0, time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch} train", leave=False)
    for images, masks, skipped in bar:
        skips.add(skipped)
        if images is None:
            continue
        images = images.to(device, non_blocking=True, memory_format=torch.channels_last)
        masks = masks.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = criterion(model(images), masks)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        total_loss += loss.item() * len(images)
        seen += len(images)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
    elapsed = time.perf_counter() - start
    return {"train_loss": total_loss / max(seen, 1), "train_images_per_s": seen / elapsed}


@torch.inference_mode()
def evaluate(
    model,
    loader,
    criterion,
    device,
    class_names,
    skips: SkipLog,
    desc: str = "eval",
    amp_dtype: torch.dtype | None = None,
) -> tuple[SegmentationMetrics, float]:
    """Metrics and mean loss of ``model`` over ``loader`` (mixed precision if ``amp_dtype``:
    fine for choosing checkpoints; reported numbers come from the fp32 evaluate command)."""
    model.eval()
    metrics = SegmentationMetrics(class_names)
    total_loss, seen = 0.0, 0
    bar = tqdm(loader, desc=desc, leave=False)
    for images, masks, skipped in bar:
        skips.add(skipped)
        if images is None:
            continue
        images = images.to(device, memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(images).float()
        masks = masks.to(device)
        total_loss += criterion(logits, masks).item() * len(images)
        seen += len(images)
        metrics.update(masks, predict_labels(logits))
        bar.set_postfix(mIoU=f"{metrics.miou:.3f}")
    return metrics, total_loss / max(seen, 1)


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


def make_spec(args: argparse.Namespace) -> ModelSpec:
    return ModelSpec(
        classes=args.classes,
        encoder=args.encoder,
        input_size=args.input_size,
        training_data={**describe(args.data), "border": args.border, "seed": args.seed},
    )


def main(args: argparse.Namespace) -> dict[str, float]:
    seed_everything(args.seed)
    device = pick_device(args.device)
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    last_path, best_path = args.out / "last.pt", args.out / "best.pt"
    resume = load_checkpoint(last_path) if args.resume else None
    spec = ModelSpec.from_dict(resume["spec"]) if resume else make_spec(args)

    def dataset(split: str, transform) -> PetSegmentation:
        samples = find_samples(args.data, split, args.val_fraction, args.seed)
        if args.limit:
            samples = samples[: args.limit]
        # TrainTransform zooms in up to 1.3x: decode no smaller than that needs.
        max_side = round(spec.input_size * TrainTransform.max_zoom)
        return PetSegmentation(samples, transform, spec.classes, args.border, max_side)

    train_set = dataset("train", TrainTransform(spec))
    val_set = dataset("val", EvalTransform(spec))
    train_loader = make_loader(train_set, args.batch_size, True, args.workers, args.seed)
    val_loader = make_loader(val_set, args.batch_size, False, args.workers)
    # channels_last: ~25% faster convolutions on CPU (oneDNN) and on CUDA tensor cores.
    model = build_model(spec, args.encoder_weights).to(device, memory_format=torch.channels_last)
    amp_dtype = autocast_dtype(device, not args.no_amp)
    print(
        f"data: {len(train_set)} train / {len(val_set)} val images from {args.data}; "
        f"device {device} ({amp_dtype or torch.float32}); input {spec.input_size}px; "
        f"classes {spec.class_names}"
    )
    criterion = SegmentationLoss(args.dice_weight)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=args.lr, weight_decay=args.weight_decay, fused=True
    )
    steps = args.epochs * math.ceil(len(train_set) / args.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps))
    # Loss scaling is only needed for fp16; bf16 has fp32's range.
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    start_epoch, best_miou, stale = 0, -1.0, 0
    if resume:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        scaler.load_state_dict(resume["scaler"])
        start_epoch, best_miou, stale = resume["epoch"] + 1, resume["best_miou"], resume["stale"]
        print(f"resumed from {last_path} at epoch {start_epoch}")

    skips = SkipLog()
    log_path = args.out / "metrics.jsonl"
    if not resume:
        log_path.write_text("")
    record: dict[str, float] = {}
    for epoch in range(start_epoch, args.epochs):
        # Each epoch's randomness depends on (seed, epoch) only, so a resumed run repeats
        # exactly what the interrupted one would have done.
        seed_everything(args.seed + epoch)
        train_loader.generator.manual_seed(args.seed + epoch)
        record = {"epoch": epoch}
        record.update(
            train_one_epoch(
                model,
                train_loader,
                criterion,
                optimizer,
                scheduler,
                scaler,
                device,
                amp_dtype,
                epoch,
                skips,
            )
        )
        metrics, val_loss = evaluate(
            model,
            val_loader,
            criterion,
            device,
            spec.class_names,
            skips,
            f"epoch {epoch} val",
            amp_dtype,
        )
        results = metrics.compute()["dataset"]
        record.update(val_loss=val_loss, val_miou=results["miou"], val_fg_iou=results["fg_iou"])
        improved = (record["val_miou"] or 0.0) > best_miou
        best_miou, stale = (record["val_miou"] or 0.0, 0) if improved else (best_miou, stale + 1)
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "epoch": epoch,
            "best_miou": best_miou,
            "stale": stale,
            "spec": spec.to_dict(),
            "args": {k: str(v) for k, v in vars(args).items()},
        }
        save_checkpoint(last_path, state)
        if improved:
            save_checkpoint(best_path, state)
        with log_path.open("a") as log:
            log.write(json.dumps(record) + "\n")
        tqdm.write(
            f"epoch {epoch}: loss {record['train_loss']:.4f} val_loss {val_loss:.4f} "
            f"val mIoU {_score(record['val_miou'])} fg IoU {_score(record['val_fg_iou'])} "
            f"({record['train_images_per_s']:.1f} img/s){' *best*' if improved else ''}"
        )
        if args.patience and stale >= args.patience:
            print(f"early stop: no val mIoU gain in {args.patience} epochs")
            break
    if skips.summary():
        print(f"warning: {skips.summary()}")
    plot_curves(log_path, args.out / "curves.png")
    print(f"best val mIoU {best_miou:.4f}; checkpoints in {args.out}")
    return record


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="dataset folder (Oxford or Kaggle)")
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
        default=None,
        help="'imagenet' (downloads) or a local torchvision ResNet state_dict; "
        "random init when omitted",
    )
    p.add_argument("--input-size", type=int, default=256, help="model input side, multiple of 32")
    p.add_argument("--epochs", type=int, default=20)
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
    return p
