"""Another version of the tiny model whose masks differ from the first's: the candidate of the
comparison and rollout tests."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from petseg.packaging.archive import build_archive

SOME_PIXELS = (0.0, 0.5, -0.5)
"""A nudge of the last layer's bias per class: the versions disagree on some pixels."""
EVERY_PIXEL_A_CAT = (-20.0, 20.0, -20.0)
"""So large that every pixel becomes a cat: a candidate that is plainly wrong."""


def perturbed_archive(
    export: Path, store: Path, scratch: Path, name: str, version: str, shift: Sequence[float]
) -> Path:
    """``export``'s model with ``shift`` added to its last layer's bias, archived into ``store``
    as ``name``.mar holding ``version``; ``scratch``: a folder for the perturbed export."""
    import torch

    copy = Path(shutil.copytree(export, Path(scratch) / f"{name}-export"))
    weights = torch.load(copy / "weights.pt", weights_only=True)
    head = next(k for k in reversed(weights) if k.endswith("bias"))
    weights[head] = weights[head] + torch.tensor(shift)[: len(weights[head])]
    torch.save(weights, copy / "weights.pt")
    return build_archive(copy, store, name=name, version=version)
