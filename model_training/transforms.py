"""Paired image/mask transforms: the mask always follows the image's geometry exactly.

Training sees random scale, crop, flip and colour jitter; evaluation sees the same letterbox
as serving (longer side to the input size, centred, padded), so the numbers measured here are
the numbers users get.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import ColorJitter

from handler.imaging import letterbox_image, letterbox_mask, normalize
from handler.spec import IGNORE_INDEX, ModelSpec


def _paste(canvas: np.ndarray, src: np.ndarray, top: int, left: int) -> None:
    """Copy ``src`` into ``canvas`` at (top, left), clipping whatever falls outside."""
    h, w = canvas.shape[-2:]
    sh, sw = src.shape[-2:]
    y0, x0 = max(0, top), max(0, left)
    y1, x1 = min(h, top + sh), min(w, left + sw)
    if y1 > y0 and x1 > x0:
        canvas[..., y0:y1, x0:x1] = src[..., y0 - top : y1 - top, x0 - left : x1 - left]


class TrainTransform:
    """Random scale around the letterbox size, random crop/pad placement, flip, colour jitter."""

    max_zoom = 1.3
    """Largest scale factor relative to the letterbox size."""

    def __init__(self, spec: ModelSpec, scale: tuple[float, float] = (0.6, max_zoom)) -> None:
        self.spec = spec
        self.scale = scale
        self.jitter = ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.04)

    def __call__(self, image: Image.Image, mask: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.spec.input_size
        factor = size / max(image.size) * float(np.random.uniform(*self.scale))
        new_size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        image = self.jitter(image.resize(new_size, Image.Resampling.BILINEAR))
        labels = np.asarray(mask.resize(new_size, Image.Resampling.NEAREST))
        pixels = normalize(np.asarray(image), self.spec.mean, self.spec.std)
        if np.random.random() < 0.5:
            pixels, labels = pixels[..., ::-1], labels[..., ::-1]
        top = int(np.random.randint(min(0, size - new_size[1]), max(0, size - new_size[1]) + 1))
        left = int(np.random.randint(min(0, size - new_size[0]), max(0, size - new_size[0]) + 1))
        out_pixels = np.zeros((3, size, size), dtype=np.float32)
        out_labels = np.full((size, size), IGNORE_INDEX, dtype=np.uint8)
        _paste(out_pixels, pixels, top, left)
        _paste(out_labels, labels, top, left)
        return torch.from_numpy(out_pixels), torch.from_numpy(out_labels).long()


class EvalTransform:
    """The serving letterbox, deterministic."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def __call__(self, image: Image.Image, mask: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        pixels, _ = letterbox_image(image, self.spec.input_size, self.spec.mean, self.spec.std)
        labels = letterbox_mask(mask, self.spec.input_size, IGNORE_INDEX)
        return torch.from_numpy(pixels), torch.from_numpy(labels).long()
