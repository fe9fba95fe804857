"""One photo's pre-annotation: segmented by the served model, turned into Label Studio regions.

The photo goes through TorchServe like every other upload (its batching, the default version
or the one asked for), in the ``labels`` form: the mask PNG and the model's confidence, no
overlay painted. The prediction is what Label Studio stores: the regions, a score (the mean over
pixels of the model's largest class probability) and the version that answered.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from petseg.bulk.predict import answer_images
from petseg.bulk.targets import Target
from petseg.labelling import regions
from petseg.labelling.label_config import Project
from petseg.labelling.task_images import TaskError
from torchserve_client import TorchServeError, Unreachable, error_message

OUTPUT = "labels"


@dataclass(frozen=True)
class Prelabeller:
    target: Target
    tolerance: float = regions.DEFAULT_TOLERANCE
    """Polygon projects: how far an outline may stray from the mask, in pixels."""

    def predict(self, photo: bytes, project: Project) -> dict[str, Any]:
        """The prediction for one photo, or TaskError with what the model server said."""
        try:
            reply = self.target.segment(photo, None, OUTPUT)
        except (TorchServeError, Unreachable) as exc:
            raise TaskError(f"the model server failed: {exc}") from exc
        if reply.status_code != 200:
            raise TaskError(f"the model server refused its image: {error_message(reply)}")
        answer = reply.json()
        mask, _ = answer_images(answer, OUTPUT)
        labels = np.asarray(Image.open(io.BytesIO(mask)))
        return {
            "result": regions.results(labels, project, self.tolerance),
            "score": answer.get("confidence"),
            "model_version": answer["model"]["version"],
        }
