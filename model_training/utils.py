"""Run-time plumbing shared by the commands: seeding, devices, checkpoints."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from handler.model import build_model
from handler.spec import ModelSpec


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically, so a run killed mid-save still resumes from the previous epoch."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint holds plain tensors, numbers and strings, so the safe loader reads it."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return torch.load(path, map_location="cpu", weights_only=True)


def model_from_checkpoint(path: Path) -> tuple[torch.nn.Module, ModelSpec, dict[str, Any]]:
    """The model (eval mode, CPU) and spec saved in a training checkpoint."""
    checkpoint = load_checkpoint(path)
    spec = ModelSpec.from_dict(checkpoint["spec"])
    model = build_model(spec)
    model.load_state_dict(checkpoint["model"])
    return model.eval(), spec, checkpoint
