"""What travels through the pipeline's steps for one batch (handler/pipeline.py).

TorchServe's template hands each step only the previous step's return value, so the batch
carries every request's state: its parsed request, decoded image, letterbox, or its error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from handler.decoding import InputError
from handler.imaging import Letterbox
from handler.payload import Request
from handler.quality import MaskQuality


@dataclass
class Item:
    """One request on its way through the batch."""

    request_id: str = ""
    """The caller's X-Request-ID, else TorchServe's own id for the request."""
    request: Request | None = None
    image: Image.Image | None = None
    """The decoded photo, reduced for the overlay when large (see decode_photo)."""
    width: int = 0
    height: int = 0
    """The photo's own size, upright: the mask's."""
    box: Letterbox | None = None
    error: InputError | None = None
    labels: np.ndarray | None = None
    found: list[dict[str, object]] = field(default_factory=list)
    """Each class in ``labels`` besides background: fraction and bounding box."""
    quality: MaskQuality | None = None
    batch_size: int = 1
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class Batch:
    items: list[Item]
    pixels: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    inference_ms: float = 0.0
