"""Build the network a spec describes, and load or save its weights."""

from __future__ import annotations

from pathlib import Path

import segmentation_models_pytorch as smp
import torch

from model_training.spec import ModelSpec


def build_model(spec: ModelSpec, encoder_weights: str | None = None) -> torch.nn.Module:
    """A U-Net (or another smp architecture) returning logits.

    ``encoder_weights``: None for random init, "imagenet" to let smp download ImageNet weights
    (needs internet), or the path of a local torchvision ResNet state_dict.
    """
    local = encoder_weights not in (None, "imagenet")
    model = smp.create_model(
        spec.architecture,
        encoder_name=spec.encoder,
        encoder_weights=None if local else encoder_weights,
        in_channels=3,
        classes=spec.num_outputs,
    )
    if local:
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
    """Logits N x C x H x W -> class ids N x H x W (one logit channel means binary)."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def load_exported(
    directory: Path, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, ModelSpec]:
    """The model of an exported directory, in eval mode."""
    spec = ModelSpec.load(directory)
    model = build_model(spec)
    state = torch.load(Path(directory) / spec.weights_file, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval(), spec
