"""Benchmark inputs: pet photos at real-world sizes, generated deterministically.

A synthetic pet scene (the demo dataset's generator) scaled up to the target size with a little
sensor-like noise, so the JPEG costs what a camera's does to decode and the model has a pet to
segment (mask agreement is measured on real boundaries, not on an empty background).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from model_training.synth import make_sample

SIZES = {"500x375": (500, 375), "4000x3000": (4000, 3000)}
"""An Oxford-IIIT Pet-sized photo and a 12 MP phone photo."""


def pet_photo(width: int, height: int, seed: int = 0, quality: int = 90) -> bytes:
    rng = np.random.default_rng(seed)
    scene, _ = make_sample(int(rng.integers(1, 3)), rng)
    pixels = np.asarray(scene.resize((width, height), Image.Resampling.BICUBIC), np.float32)
    pixels += rng.normal(0, 3, pixels.shape).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
