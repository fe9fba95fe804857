"""The network as training sees it: initial encoder weights and labels from a batch's logits.

The architecture itself (and loading an export) is the archive's, in handler.model: training
builds the very network that TorchServe will load.
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

import segmentation_models_pytorch as smp
import torch
from huggingface_hub import constants, try_to_load_from_cache

from handler.model import build_model
from handler.spec import ModelSpec
from model_training.arguments import AUTO, NONE

SMP_PRETRAINED = "imagenet"
HUB_TIMEOUT_S = 3.0


class PretrainedUnavailable(ValueError):
    """ImageNet weights were asked for (or are the default) and cannot be had here."""


def choose_encoder_weights(requested: str, data_kind: str, encoder: str) -> str | None:
    """What ``--encoder-weights`` means for this run: None (random init), "imagenet" (checked
    to be cached or downloadable now, so an offline machine stops at once, not after
    retries), or a local path."""
    if requested == NONE or (requested == AUTO and data_kind == "synthetic"):
        return None
    if requested in (AUTO, SMP_PRETRAINED):
        ensure_pretrained_available(encoder)
        return SMP_PRETRAINED
    return requested


def ensure_pretrained_available(encoder: str) -> None:
    settings = smp.encoders.encoders[encoder]["pretrained_settings"][SMP_PRETRAINED]
    cached = try_to_load_from_cache(
        settings["repo_id"], "model.safetensors", revision=settings["revision"]
    )
    if isinstance(cached, str):
        return
    hub = urlsplit(constants.ENDPOINT)
    try:
        socket.create_connection((hub.hostname, hub.port or 443), timeout=HUB_TIMEOUT_S).close()
    except OSError as exc:
        raise PretrainedUnavailable(
            f"ImageNet weights for the {encoder} encoder are not cached and {hub.hostname} is "
            f"not reachable ({exc}): give --encoder-weights PATH (a torchvision {encoder} "
            "state_dict) or --encoder-weights none (random init: several IoU points less)"
        ) from exc


def build_training_model(spec: ModelSpec, encoder_weights: str | None = None) -> torch.nn.Module:
    """The spec's network with its encoder initialised as asked.

    ``encoder_weights``: None for random init, "imagenet" to let smp download ImageNet weights
    (needs internet), or the path of a local torchvision ResNet state_dict.
    """
    if encoder_weights in (None, SMP_PRETRAINED):
        return build_model(spec, encoder_weights)
    model = build_model(spec)
    load_encoder_weights(model, Path(encoder_weights))
    return model


def load_encoder_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a torchvision-style backbone state_dict into ``model.encoder``; its head is dropped."""
    if not path.is_file():
        raise FileNotFoundError(f"encoder weights file {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("fc.")}
    expected = model.encoder.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{path} does not fit the {type(model.encoder).__name__} encoder: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:3]}), {len(mismatched)} of another shape (e.g. {mismatched[:3]})"
        )
    model.encoder.load_state_dict(state)


def predict_labels(logits: torch.Tensor) -> torch.Tensor:
    """Logits N x C x H x W -> class ids N x H x W (one logit channel means binary).

    The argmax runs over the innermost axis of a channels-last copy: torch's CPU argmax over
    dim 1 of NCHW logits is ~6x slower (same result).
    """
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.movedim(1, -1).contiguous().argmax(dim=-1)
