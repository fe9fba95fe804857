"""Handler settings: the ``handler:`` section of config/model-config.yaml."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HandlerConfig:
    """The ``handler:`` section of model-config.yaml (see config/model-config.yaml)."""

    max_image_pixels: int = 25_000_000
    min_image_side: int = 8
    overlay_alpha: float = 0.5
    jpeg_quality: int = 85
    overlay_max_side: int = 2048
    """Longest side of the overlay image; a larger photo is reduced by a power of two (a JPEG
    while it is decoded: ``reduced_jpeg_decode``). 0: the photo's own size. The mask is always
    the photo's size."""
    threads: int = 0
    """torch threads per CPU worker; 0 = the plan of handler/threads.py (usable cores / workers
    alive on the machine, all usable cores for a lone request)."""
    mixed_precision: bool = True
    """bf16 weights on CPUs with native bf16, fp16 autocast on CUDA, else fp32 (see
    handler.model.ServingModel)."""

    # Speed mechanisms, each with its switch: `make bench` measures each one off against on
    # (bench/ablation.py) where it applies, and one that gains less than 10% there goes.
    lone_request_every_core: bool = True
    """A batch of one request while no other worker is busy gets every usable core, not this
    worker's share (handler/threads.py)."""
    upsample_along_outlines: bool = True
    """Interpolate the class scores only where classes meet (handler/upsampling.py), not at
    every pixel of the photo."""
    reduced_jpeg_decode: bool = True
    """A JPEG larger than ``overlay_max_side`` is decoded at the overlay's size by libjpeg
    (handler/decoding.py), not at full size and then reduced."""

    @classmethod
    def from_yaml(cls, section: dict | None) -> HandlerConfig:
        known = cls.__dataclass_fields__.keys()
        unknown = set(section or {}) - set(known)
        if unknown:
            raise ValueError(f"unknown handler settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**(section or {}))
