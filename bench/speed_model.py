"""The speed model: the demo model's architecture and classes at the real-data input size, with
random weights.

`make bench` (bench/run.py) and `python -m bench.ablation` both measure speed at 256 px, the
input size of a model trained on real photos, without having one; this builds it for the speed
rows only, and it is never shipped. Its own module so that both import it and neither imports
the other.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from handler.model import build_model
from handler.spec import ModelSpec


def random_weights_model(like: Path, folder: Path, size: int = 256) -> Path:
    """The demo model's architecture and classes at ``size`` px, random weights: speed only."""
    spec = replace(
        ModelSpec.load(like),
        input_size=size,
        version="random",
        training_data={"kind": "random weights, for speed rows only"},
        metrics={},
    )
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(build_model(spec).state_dict(), folder / spec.weights_file)
    spec.save(folder)
    return folder
