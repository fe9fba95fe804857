"""Export a checkpoint as the folder the archive step packages: weights + model_spec.json.

    python -m model_training export --checkpoint runs/demo/best.pt \
        --metrics runs/demo/eval/metrics.json --out exported/petseg
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from handler.spec import ModelSpec
from model_training.utils import model_from_checkpoint


def export(
    checkpoint: Path,
    out: Path,
    metrics: Path | None = None,
    name: str = "petseg",
    version: str = "1.0",
) -> ModelSpec:
    """Write ``weights.pt`` (a plain state_dict) and ``model_spec.json`` into ``out``."""
    model, spec, state = model_from_checkpoint(checkpoint)
    spec.name, spec.version = name, version
    spec.training_data = {
        **spec.training_data,
        "epochs_trained": int(state["epoch"]) + 1,
        "best_val_miou": state["best_miou"],
    }
    if metrics:
        spec.metrics = json.loads(Path(metrics).read_text())
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / spec.weights_file)
    spec.save(out)
    return spec


def main(args: argparse.Namespace) -> None:
    spec = export(args.checkpoint, args.out, args.metrics, args.name, args.version)
    print(
        f"exported {spec.name} {spec.version} ({spec.architecture}/{spec.encoder}, "
        f"{spec.classes}, {spec.input_size}px) to {args.out}"
    )
