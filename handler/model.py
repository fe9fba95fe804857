"""The network a spec describes: built, loaded from an export, and its logits turned into a
photo-sized label map (the serving path; training adds its own initialisation on top)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import segmentation_models_pytorch as smp
import torch
from torch.fx.experimental.optimization import fuse

from handler.imaging import Letterbox
from handler.spec import ModelSpec
from handler.upsampling import Region, upsample_everywhere, upsample_labels


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
    logits: torch.Tensor, box: Letterbox, height: int, width: int, along_outlines: bool = True
) -> tuple[np.ndarray, dict[int, Region]]:
    """One image's letterboxed logits C x S x S -> uint8 class ids at the photo's own size, and
    where each class found lies (pixel count, bounding box; background included).

    The padding is cropped off before the scores are upsampled bilinearly, so the mask lines up
    with the photo whatever its aspect ratio; the labels equal the argmax of the upsampled
    logits, computed only along the outlines (handler/upsampling.py) unless ``along_outlines``
    is off. Upsampling is linear, so
    the margins of classes 1.. over class 0 stand for the logits (one channel less).
    """
    content = class_logits(logits, box)
    margins = (content[1:] - content[:1]).cpu().numpy()
    upsample = upsample_labels if along_outlines else upsample_everywhere
    return upsample(margins, height, width)


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


class ServingModel:
    """The exported network as the handler runs it: fp32 logits from a batch of pixels.

    Inference only, so each batch norm is folded into the convolution before it (torch.fx,
    eval statistics: one kernel instead of two), and the layout is channels-last (oneDNN's and
    tensor cores' native one). On CPUs with native bf16 the weights are cast to bf16 once,
    here: autocast would re-cast all 24 M of them on every call, ~15 ms per batch of the demo
    model whatever its size (half its batch-1 time). bf16 keeps fp32's exponent range, so a
    plain bf16 network is safe; fp16 is not (activations overflow past 65504), so CUDA keeps
    fp16 autocast, which runs reductions and norms in fp32.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device, mixed_precision: bool):
        self.device = device
        self.dtype = autocast_dtype(device, mixed_precision) or torch.float32
        network = fuse(model.eval()).to(memory_format=torch.channels_last)
        self.network = network.to(self.dtype) if self.cast_weights else network

    @property
    def cast_weights(self) -> bool:
        """bf16 runs as bf16 weights; fp16 (CUDA) as autocast over fp32 ones."""
        return self.dtype == torch.bfloat16

    @property
    def precision(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self.cast_weights:
                return self.network(pixels.to(self.dtype)).float()
            autocast = self.dtype != torch.float32
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=autocast):
                return self.network(pixels).float()


def load_exported(
    directory: Path, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, ModelSpec]:
    """The model of an exported directory, in eval mode."""
    spec = ModelSpec.load(directory)
    model = build_model(spec)
    state = torch.load(Path(directory) / spec.weights_file, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval(), spec
