"""The model's pipeline, top to bottom: a batch of uploads in, one answer per upload out.

    decode -> letterbox -> forward pass -> labels at the photo's size -> the output asked for

Each upload is decoded on its own, so a bad one becomes a 4xx answer for it alone while the
rest of its batch is served; every photo of the batch then goes through one forward pass. The
answer is the one a request asked for (handler/protocol.py OUTPUTS): JSON with a palette-PNG
mask, an overlay, class statistics and timings, the mask or overlay alone, COCO RLE, GeoJSON
polygons, or the mask with its COCO RLE.

Nothing here knows the server or the machine: TorchServe's handler (handler/petseg_handler.py)
turns its requests into :class:`Item` and the answers back, and the forward pass is handed in
(``forward``): handler/runtime.py's on a worker (threads, precision), the plain model in the
naive baseline (bench/naive_baseline.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from handler.batch import Batch, Item
from handler.decoding import InputError, decode_photo
from handler.imaging import letterbox_image
from handler.model import photo_labels
from handler.payload import Request
from handler.protocol import OUTPUTS
from handler.quality import mask_quality
from handler.rendering import (
    b64,
    class_stats,
    encode,
    mask_png,
    paint_overlay,
    polygon_features,
    rle_masks,
)
from handler.settings import HandlerConfig
from handler.spec import ModelSpec

Forward = Callable[[torch.Tensor], torch.Tensor]
"""A batch of letterboxed pixels N x 3 x S x S -> fp32 logits N x C x S x S."""


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


@dataclass(frozen=True)
class Answer:
    """What goes back for one request."""

    body: bytes | str
    media_type: str
    status: int = 200
    message: str = ""
    """Why a request was refused (the status line's phrase); empty for a 200."""


class Pipeline:
    """The model with everything around it that turns uploads into answers."""

    def __init__(
        self,
        spec: ModelSpec,
        forward: Forward,
        precision: str,
        version: str,
        config: HandlerConfig | None = None,
    ) -> None:
        self.spec = spec
        self.forward = forward
        self.precision = precision
        """What computes the logits (float32, bfloat16, float16): stated in every answer."""
        self.version = version
        self.config = config or HandlerConfig()

    def run(self, requests: list[Request | InputError]) -> list[Answer]:
        """The whole pipeline for one batch (TorchServe's handler runs the same three steps)."""
        items = [Item(request=r) if isinstance(r, Request) else Item(error=r) for r in requests]
        return self.answer(self.infer(self.prepare(items)))

    # -- 1. decode and letterbox every upload -----------------------------------------------
    def prepare(self, items: list[Item]) -> Batch:
        """Decodes each item that has a request (an upload that cannot be used gets its error),
        then stacks the good ones, letterboxed, into one batch of pixels."""
        for item in items:
            if item.error is None:
                self._decode(item)
        good = [item for item in items if item.error is None]
        if not good:
            return Batch(items)
        start = time.perf_counter()
        arrays = []
        for item in good:
            pixels, item.box = letterbox_image(
                item.image, self.spec.input_size, self.spec.mean, self.spec.std
            )
            arrays.append(pixels)
        share = _ms(start) / len(good)
        for item in good:
            item.timings["preprocess"] = round(item.timings["preprocess"] + share, 2)
        return Batch(items, torch.from_numpy(np.stack(arrays)))

    def _decode(self, item: Item) -> None:
        start = time.perf_counter()
        config = self.config
        try:
            photo = decode_photo(
                item.request.image,
                config.max_image_pixels,
                config.min_image_side,
                config.overlay_max_side,
                config.reduced_jpeg_decode,
            )
            item.image, item.width, item.height = photo.image, photo.width, photo.height
        except InputError as exc:
            item.error = exc
        item.timings["preprocess"] = _ms(start)

    # -- 2. one forward pass for the whole batch ----------------------------------------------
    def infer(self, batch: Batch) -> Batch:
        if batch.pixels is not None:
            start = time.perf_counter()
            batch.logits = self.forward(batch.pixels)
            batch.inference_ms = _ms(start)
        return batch

    # -- 3. labels at each photo's size, and the answer asked for ----------------------------
    def answer(self, batch: Batch) -> list[Answer]:
        logits = iter(batch.logits if batch.logits is not None else [])
        answers = []
        for item in batch.items:
            if item.error is not None:
                answers.append(self._refusal(item))
                continue
            item.timings["inference"] = batch.inference_ms
            item.batch_size = len(batch.items)
            start = time.perf_counter()
            self._label(item, next(logits))
            answers.append(self._render(item, start))
        return answers

    def _label(self, item: Item, logits: torch.Tensor) -> None:
        """Class ids at the photo's own size, the classes found, and the mask's quality."""
        item.labels, regions = photo_labels(
            logits, item.box, item.height, item.width, self.config.upsample_along_outlines
        )
        item.found = class_stats(regions, self.spec.class_names, item.height * item.width)
        item.quality = mask_quality(logits, item.box)

    def _render(self, item: Item, start: float) -> Answer:
        """The output asked for; ``start``: when this item's postprocessing began."""
        output = item.request.output
        match output:
            case "json":
                body = self._full_answer(item, start)
            case "mask":
                body = mask_png(item.labels, self.spec.palette)
            case "overlay":
                body = self._overlay_jpeg(item)
            case "rle" | "labels":  # labels: the rle answer with the mask PNG
                answer = {**self._frame(item), "masks": rle_masks(item.labels, item.found)}
                if output == "labels":  # what a pre-annotation is made of, and its score
                    answer["mask_png"] = b64(mask_png(item.labels, self.spec.palette))
                    answer["confidence"] = round(1 - item.quality.uncertainty, 4)
                body = json.dumps(answer)
            case _:  # polygons: a GeoJSON FeatureCollection, our fields beside its own
                tolerance = item.request.tolerance
                features = polygon_features(item.labels, item.found, self.spec.palette, tolerance)
                body = json.dumps(
                    {
                        "type": "FeatureCollection",
                        "features": features,
                        **self._frame(item),
                        "tolerance": tolerance,
                    }
                )
        if output != "json":
            item.timings["postprocess"] = _ms(start)
        return Answer(body, OUTPUTS[output])

    def _frame(self, item: Item) -> dict:
        """What every structured answer starts with: the model and the photo's size."""
        return {
            "model": {
                "name": self.spec.name,
                "version": self.version,
                "precision": self.precision,
                "training_data": self.spec.training_data.get("kind", "unknown"),
            },
            "width": item.width,
            "height": item.height,
        }

    def _overlay_jpeg(self, item: Item) -> bytes:
        """The decoded photo is painted on: nothing needs its own pixels afterwards."""
        image = paint_overlay(
            item.image, item.labels, self.spec.palette, self.config.overlay_alpha, item.found
        )
        return encode(image, "jpeg", self.config.jpeg_quality)

    def _full_answer(self, item: Item, start: float) -> str:
        """Everything as JSON; its timings are taken last, so they include the encoders."""
        mask, overlay = mask_png(item.labels, self.spec.palette), self._overlay_jpeg(item)
        classes = zip(self.spec.class_names, self.spec.palette, strict=True)
        item.timings["postprocess"] = _ms(start)
        return json.dumps(
            {
                **self._frame(item),
                "classes": [{"id": i, "name": n, "color": c} for i, (n, c) in enumerate(classes)],
                "found": item.found,
                "foreground_fraction": round(sum(f["fraction"] for f in item.found), 6),
                "mask_png": b64(mask),
                "overlay_jpeg": b64(overlay),
                "batch_size": item.batch_size,
                "timings_ms": item.timings,
            }
        )

    @staticmethod
    def _refusal(item: Item) -> Answer:
        error = item.error
        body = {
            "code": error.status,
            "type": "InputError",
            "message": error.message,
            "request_id": item.request_id,
        }
        return Answer(json.dumps(body), "application/json", error.status, error.message)
