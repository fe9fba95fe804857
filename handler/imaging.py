"""Image functions shared by training and serving.

The model must see the same pixels at training, evaluation and serving time, so the geometry
(letterbox) and the normalisation are written once, here, on plain PIL images and numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Letterbox:
    """Where a resized image sits inside the square model input, so padding can be undone."""

    size: int
    width: int
    height: int
    left: int
    top: int

    @classmethod
    def fit(cls, width: int, height: int, size: int) -> Letterbox:
        """Scale the longer side to ``size`` and centre the result in a ``size`` square."""
        scale = size / max(width, height)
        new_w = max(1, min(size, round(width * scale)))
        new_h = max(1, min(size, round(height * scale)))
        return cls(size, new_w, new_h, (size - new_w) // 2, (size - new_h) // 2)

    def crop(self, array: np.ndarray) -> np.ndarray:
        """The content region of an array laid out as ``(..., size, size)``."""
        return array[..., self.top : self.top + self.height, self.left : self.left + self.width]


def normalize(rgb: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """uint8 HxWx3 RGB -> float32 3xHxW, scaled to [0, 1] then standardised per channel."""
    scale = np.float32(1 / 255)
    m = np.asarray(mean, dtype=np.float32)[:, None, None]
    s = np.asarray(std, dtype=np.float32)[:, None, None]
    chw = rgb.transpose(2, 0, 1).astype(np.float32) * scale
    return (chw - m) / s


def letterbox_image(
    image: Image.Image, size: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[np.ndarray, Letterbox]:
    """Normalised 3 x size x size input; the padding is zero, i.e. the mean colour."""
    box = Letterbox.fit(image.width, image.height, size)
    # reducing_gap: a fast integer box reduction first, then bilinear; 3.5x faster for a 12 MP
    # photo, 1.6x for 500x375, pixels within a few levels of a direct resize.
    resized = image.resize((box.width, box.height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    out = np.zeros((3, size, size), dtype=np.float32)
    box.crop(out)[...] = normalize(np.asarray(resized), mean, std)
    return out, box


def letterbox_mask(mask: Image.Image, size: int, fill: int) -> np.ndarray:
    """Label mask laid out like :func:`letterbox_image`; padding gets ``fill`` (ignore)."""
    box = Letterbox.fit(mask.width, mask.height, size)
    resized = mask.resize((box.width, box.height), Image.Resampling.NEAREST)
    out = np.full((size, size), fill, dtype=np.uint8)
    box.crop(out)[...] = np.asarray(resized)
    return out


def palette_image(mask: np.ndarray, palette: list[list[int]]) -> Image.Image:
    """A palette ("P") image whose pixel values are the class ids: viewable and machine-readable."""
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    flat = [channel for colour in palette for channel in colour]
    image.putpalette(flat + [0] * (768 - len(flat)))
    return image


def colorize(mask: np.ndarray, palette: list[list[int]]) -> np.ndarray:
    """HxW class ids -> HxWx3 uint8 colours; ids outside the palette (ignore) are white."""
    lut = np.full((256, 3), 255, dtype=np.uint8)
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return lut[mask]
