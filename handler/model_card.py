"""The model card: what a served model is, for people deciding whether to trust its masks.

Built from the model spec (classes, input size, training data, evaluation) and what the worker
runs (version, precision); never a file path of the machine it was trained on.
"""

from __future__ import annotations

from typing import Any

from handler.spec import ModelSpec

TRAINING_FIELDS = ("kind", "name", "images", "epochs_trained", "encoder_weights", "border")
SCORES = ("miou", "fg_iou", "fg_dice", "pixel_accuracy")


def model_card(spec: ModelSpec, version: str, precision: str) -> dict[str, Any]:
    classes = zip(spec.class_names, spec.palette, strict=True)
    return {
        "name": spec.name,
        "version": version,
        "architecture": f"{spec.architecture} / {spec.encoder}",
        "classes": [{"id": i, "name": n, "color": c} for i, (n, c) in enumerate(classes)],
        "input_size": spec.input_size,
        "precision": precision,
        "training_data": {
            "kind": "unknown",
            **{k: spec.training_data[k] for k in TRAINING_FIELDS if k in spec.training_data},
        },
        "evaluation": evaluation(spec.metrics),
    }


def evaluation(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline scores of the evaluate command, dataset-level and per image."""
    if not metrics:
        return {}
    return {
        "split": metrics.get("split"),
        "images": metrics.get("num_images"),
        "dataset": {k: metrics.get("dataset", {}).get(k) for k in SCORES},
        "per_image": {k: metrics.get("per_image", {}).get(k) for k in SCORES},
    }
