"""The network a spec describes: built, loaded from an export, and its logits turned into a
photo-sized label map (the serving path; training adds its own initialisation on top)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import segmentation_models_pytorch as smp
import torch

from handler.imaging import Letterbox
from handler.spec import ModelSpec
from handler.upsampling import Region, upsample_labels


def build_model(spec: ModelSpec, encoder_weights: str | None = None) -> torch.nn.Module:
    """A U-Net (or another smp architecture) returning logits.

    ``encoder_weights``: None (random init: serving loads its own weights next, and smp's
    default "imagenet" would download) or the name of smp's pretrained weights.
    """
    return smp.create_model(
        spec.architecture,
        encoder_name=spec.encoder,
        encoder_weights=encoder_weights,
        in_channels=3,
        classes=spec.num_outputs,
    )


def class_logits(logits: torch.Tensor, box: Letterbox) -> torch.Tensor:
    """One image's letterboxed logits C x S x S -> the photo's region, one channel per class
    (a binary model's single logit is the pet's margin over background, which gets a zero)."""
    content = box.crop(logits).float()
    if content.shape[0] == 1:
        content = torch.cat([torch.zeros_like(content), content])
    return content


def photo_labels(
    logits: torch.Tensor, box: Letterbox, height: int, width: int
) -> tuple[np.ndarray, dict[int, Region]]:
    """One image's letterboxed logits C x S x S -> uint8 class ids at the photo's own size, and
    where each class found lies (pixel count, bounding box; background included).

    The padding is cropped off before the scores are upsampled bilinearly, so the mask lines up
    with the photo whatever its aspect ratio; the labels equal the argmax of the upsampled
    logits, computed only along the outlines (handler/upsampling.py). Upsampling is linear, so
    the margins of classes 1.. over class 0 stand for the logits (one channel less).
    """
    content = class_logits(logits, box)
    margins = (content[1:] - content[:1]).cpu().numpy()
    return upsample_labels(margins, height, width)


def autocast_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """Mixed precision where it pays: fp16 on CUDA, bf16 on CPUs with native bf16 (AVX512-BF16
    or AMX: about 2x faster training and inference here), None (fp32) elsewhere (emulated bf16
    is slower than fp32)."""
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
    return None


def load_exported(
    directory: Path, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, ModelSpec]:
    """The model of an exported directory, in eval mode."""
    spec = ModelSpec.load(directory)
    model = build_model(spec)
    state = torch.load(Path(directory) / spec.weights_file, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval(), spec
