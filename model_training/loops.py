"""One pass over a loader: training (forward, loss, step) or validation (metrics and loss)."""

from __future__ import annotations

import time

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from model_training.datasets import PetSegmentation, SkipLog, collate
from model_training.metrics import SegmentationMetrics
from model_training.network import predict_labels


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
def validate(
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
