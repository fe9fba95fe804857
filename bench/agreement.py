"""Mask agreement: the share of pixels whose class in a served mask is the fp32 eager class.

The served configuration (mixed precision, batching, the reduced JPEG decode) may move a few
pixels of a mask; these figures say how many, for each server over HTTP and for one batch
through the handler in-process. `make bench` checks them against a target (bench/report.py).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from bench.loadgen import Connection
from bench.pipeline import handle_batch, local_handler, released
from bench.under_test import System, Workload


def mask_of(answer: bytes | str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(json.loads(answer)["mask_png"]))))


def pixel_agreement(answers: list[bytes | str], reference: list[np.ndarray]) -> float:
    """Fraction of pixels whose class in the answers' masks equals the fp32 eager class."""
    masks = [mask_of(answer) for answer in answers]
    equal = sum(int((m == r).sum()) for m, r in zip(masks, reference, strict=True))
    return round(equal / sum(r.size for r in reference), 5)


def agreement(system: System, photos: list[bytes], reference: list[np.ndarray]) -> float:
    """The served masks, one request at a time, against the fp32 eager ones."""
    with Connection(system.target) as connection:
        answers = [connection.send(system.target.request(data))[1] for data in photos]
    return pixel_agreement(answers, reference)


def batched_agreement(model_dir: Path, settings: dict, work: Workload) -> dict[str, float]:
    """The served precision's masks: each photo size's checks as one batch through the handler
    in-process, as a worker hands it a batch."""
    with released(local_handler(model_dir, settings)) as handler:
        return {
            photo: pixel_agreement(
                handle_batch(handler, [{"body": data} for data in checks]), work.reference[photo]
            )
            for photo, checks in work.checks.items()
        }
