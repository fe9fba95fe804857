"""The pipeline alone, with no server around it: what another server's adapter would call."""

import io
import json

import numpy as np
import torch
from PIL import Image

from handler.decoding import InputError
from handler.model import load_exported
from handler.payload import Request
from handler.pipeline import Pipeline
from tests.support import images


def test_the_pipeline_answers_a_batch_with_a_plain_forward_pass(tiny_export):
    model, spec = load_exported(tiny_export)
    calls = []

    def forward(pixels: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(pixels.shape))
        with torch.inference_mode():
            return model(pixels)

    pipeline = Pipeline(spec, forward, "float32", "7")
    requests = [
        Request(images.jpeg(120, 90), "json"),
        Request(b"no image", "json"),
        InputError(400, "no image file in the request"),
        Request(images.png(64, 48), "mask"),
    ]
    answers = pipeline.run(requests)
    assert calls == [(2, 3, spec.input_size, spec.input_size)]  # the good ones, one pass
    assert [a.status for a in answers] == [200, 415, 400, 200]
    assert [a.media_type for a in answers] == [
        "application/json",
        "application/json",
        "application/json",
        "image/png",
    ]
    result = json.loads(answers[0].body)
    assert result["model"] == {
        "name": spec.name,
        "version": "7",
        "precision": "float32",
        "training_data": spec.training_data["kind"],
    }
    assert set(result["timings_ms"]) == {"preprocess", "inference", "postprocess"}
    assert json.loads(answers[1].body)["code"] == 415 and answers[1].message
    mask = Image.open(io.BytesIO(answers[3].body))
    assert mask.size == (64, 48) and set(np.unique(np.asarray(mask))) <= {0, 1, 2}
