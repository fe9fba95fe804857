"""The model spec: the one place that says what a petseg model is.

Training writes it next to the weights (``model_spec.json``); evaluation, export and the
TorchServe handler read it back. Everything a consumer needs to run the weights correctly
(classes, colours, input size, normalisation) lives here and nowhere else, so this module
imports nothing heavier than the standard library.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SPEC_FILENAME = "model_spec.json"
WEIGHTS_FILENAME = "weights.pt"
SPEC_FORMAT_VERSION = 1

IGNORE_INDEX = 255
"""Label of pixels that neither the loss nor the metrics look at (the trimap's border band)."""

# ImageNet statistics, RGB in [0, 1]. Kept here because smp's get_preprocessing_params()
# downloads a config from a model hub, which must never happen at run time.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The original app's colours: cat red, dog green, on black.
CLASS_SETS: dict[str, dict[str, Any]] = {
    "multiclass": {
        "class_names": ["background", "cat", "dog"],
        "palette": [[0, 0, 0], [255, 0, 0], [0, 255, 0]],
    },
    "binary": {
        "class_names": ["background", "pet"],
        "palette": [[0, 0, 0], [255, 215, 0]],
    },
}

SPECIES_CLASS = {1: 1, 2: 2}
"""Oxford SPECIES id (1 cat, 2 dog) -> multiclass label id."""


@dataclass
class ModelSpec:
    """Architecture, label set and preprocessing of one trained model."""

    classes: str = "multiclass"
    architecture: str = "Unet"
    encoder: str = "resnet34"
    input_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    name: str = "petseg"
    version: str = "1.0"
    weights_file: str = WEIGHTS_FILENAME
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.classes not in CLASS_SETS:
            raise ValueError(f"classes must be one of {sorted(CLASS_SETS)}, got {self.classes!r}")
        if self.input_size <= 0 or self.input_size % 32:
            raise ValueError(f"input_size must be a positive multiple of 32, got {self.input_size}")
        self.mean = tuple(self.mean)
        self.std = tuple(self.std)

    @property
    def class_names(self) -> list[str]:
        return list(CLASS_SETS[self.classes]["class_names"])

    @property
    def palette(self) -> list[list[int]]:
        return [list(c) for c in CLASS_SETS[self.classes]["palette"]]

    @property
    def num_classes(self) -> int:
        """Number of labels in a mask (background included)."""
        return len(self.class_names)

    @property
    def num_outputs(self) -> int:
        """Output channels of the network: one logit for binary, one per class otherwise."""
        return 1 if self.classes == "binary" else self.num_classes

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            format_version=SPEC_FORMAT_VERSION,
            class_names=self.class_names,
            palette=self.palette,
            num_outputs=self.num_outputs,
            ignore_index=IGNORE_INDEX,
        )
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        version = data.get("format_version", SPEC_FORMAT_VERSION)
        if version != SPEC_FORMAT_VERSION:
            raise ValueError(f"unsupported model spec format_version {version}")
        known = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, directory: Path) -> Path:
        path = Path(directory) / SPEC_FILENAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: Path) -> ModelSpec:
        path = Path(directory) / SPEC_FILENAME
        if not path.is_file():
            raise FileNotFoundError(
                f"no {SPEC_FILENAME} in {directory}: is this an exported model?"
            )
        return cls.from_dict(json.loads(path.read_text()))
