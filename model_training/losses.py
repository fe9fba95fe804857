"""Cross-entropy + Dice, both blind to ignore pixels.

Cross-entropy alone under-weights thin parts (ears, tails, legs); Dice optimises the overlap the
metrics report. Both skip IGNORE_INDEX so the trimap's uncertain border never teaches anything.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from handler.spec import IGNORE_INDEX


def _soft_dice(probs: torch.Tensor, onehot: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """1 - mean Dice over classes present in the batch, probs/onehot N x C x H x W."""
    probs, onehot = probs * valid, onehot * valid
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    total = probs.sum(dims) + onehot.sum(dims)
    present = onehot.sum(dims) > 0
    dice = (2 * inter + 1.0) / (total + 1.0)
    return 1 - dice[present].mean() if present.any() else probs.sum() * 0


class SegmentationLoss(torch.nn.Module):
    """CE (or BCE for one logit) + ``dice_weight`` x soft Dice."""

    def __init__(self, dice_weight: float = 1.0) -> None:
        super().__init__()
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = (target != IGNORE_INDEX).unsqueeze(1)
        safe = target.masked_fill(~valid[:, 0], 0)
        if logits.shape[1] == 1:
            per_pixel = F.binary_cross_entropy_with_logits(
                logits[:, 0], safe.float(), reduction="none"
            )
            ce = (per_pixel * valid[:, 0]).sum() / valid.sum().clamp(min=1)
            probs = torch.sigmoid(logits)
            probs = torch.cat([1 - probs, probs], dim=1)
            onehot = F.one_hot(safe, 2).permute(0, 3, 1, 2)
        else:
            ce = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
            probs = logits.softmax(dim=1)
            onehot = F.one_hot(safe, logits.shape[1]).permute(0, 3, 1, 2)
        if not valid.any():
            return logits.sum() * 0
        return ce + self.dice_weight * _soft_dice(probs.float(), onehot.float(), valid)
