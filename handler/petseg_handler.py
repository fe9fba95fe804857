"""TorchServe handler for petseg: batched U-Net segmentation of cats and dogs.

One TorchServe batch = one forward pass. Each request is decoded and letterboxed on its own, so
a bad upload becomes a 4xx answer for that request only while the rest of the batch is served.
Answers: JSON with a palette-PNG mask, an overlay, class statistics and timings, or (a form
field ``output`` = ``mask`` / ``overlay``, or ``Accept: image/png`` / ``image/jpeg``) the image
alone.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from ts.metrics.dimension import Dimension
from ts.metrics.metric_type_enum import MetricTypes
from ts.torch_handler.base_handler import BaseHandler

import handler
from handler.batch import Batch, Item
from handler.decoding import InputError, decode_image
from handler.imaging import letterbox_image
from handler.model import autocast_dtype, load_exported, photo_labels
from handler.model_card import model_card
from handler.payload import has_image, parse_request
from handler.protocol import OUTPUTS, TOLERANCE_HEADER
from handler.rendering import (
    b64,
    class_stats,
    encode,
    mask_png,
    overlay_image,
    polygon_features,
    rle_masks,
)
from handler.settings import HandlerConfig

logger = logging.getLogger(__name__)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


class PetSegHandler(BaseHandler):
    """preprocess -> inference -> postprocess over a :class:`Batch` (TorchServe's template)."""

    _describe_allowed = False

    def initialize(self, context) -> None:
        properties = context.system_properties
        self.config = HandlerConfig.from_yaml((context.model_yaml_config or {}).get("handler"))
        gpu = properties.get("gpu_id")
        use_cuda = torch.cuda.is_available() and gpu is not None
        self.device = torch.device(f"cuda:{gpu}" if use_cuda else "cpu")
        if not use_cuda:
            torch.set_num_threads(self._cpu_threads(context))
        self.model, self.spec = load_exported(Path(properties["model_dir"]), self.device)
        self.model = self.model.to(memory_format=torch.channels_last)
        self.autocast = autocast_dtype(self.device, self.config.mixed_precision)
        # The archive's version (torch-model-archiver --version) is the one users manage.
        self.version = str(
            (context.manifest or {}).get("model", {}).get("modelVersion") or self.spec.version
        )
        self._warm_up(int(properties.get("batch_size") or 1))
        logger.info(
            "petseg %s on %s, %d threads, input %dpx, %s, code from %s",
            self.version,
            self.device,
            torch.get_num_threads(),
            self.spec.input_size,
            self.precision,
            Path(handler.__file__).parent,  # the archive's copy, not a checkout
        )
        self.initialized = True

    def handle(self, data: list[dict], context) -> list:
        """TorchServe's template; a describe is honoured only as TorchServe's management API
        sends it (one request, no image), so an inference client that adds a ``describe``
        header cannot swap its batch's answers for a model card."""
        self._describe_allowed = len(data) == 1 and not has_image(data[0])
        return super().handle(data, context)

    def _is_describe(self) -> bool:
        return self._describe_allowed and super()._is_describe()

    def describe_handle(self) -> str:
        """The model card (`GET /models/petseg?customized=true`): what the model is, from the
        spec, without file paths."""
        return json.dumps(model_card(self.spec, self.version, self.precision))

    @property
    def precision(self) -> str:
        return str(self.autocast or torch.float32).removeprefix("torch.")

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        with (
            torch.inference_mode(),
            torch.autocast(
                self.device.type, dtype=self.autocast, enabled=self.autocast is not None
            ),
        ):
            return self.model(pixels).float()

    def _cpu_threads(self, context) -> int:
        if self.config.threads:
            return self.config.threads
        workers = int((context.model_yaml_config or {}).get("minWorkers", 1))
        return max(1, (os.cpu_count() or 1) // max(1, workers))

    def _warm_up(self, batch_size: int) -> None:
        """The first forward pass is several times slower (allocations, kernel choice)."""
        size = self.spec.input_size
        for n in sorted({1, batch_size}):
            self._forward(torch.zeros(n, 3, size, size, device=self.device))

    # -- template steps -------------------------------------------------------------------
    def preprocess(self, data: list[dict]) -> Batch:
        items = [self._prepare(index, row) for index, row in enumerate(data)]
        good = [item for item in items if item.error is None]
        pixels = None
        if good:
            start = time.perf_counter()
            arrays = [self._letterbox(item) for item in good]
            pixels = torch.from_numpy(np.stack(arrays)).to(self.device)
            pixels = pixels.contiguous(memory_format=torch.channels_last)
            share = _ms(start) / len(good)
            for item in good:
                item.timings["preprocess"] = round(item.timings["preprocess"] + share, 2)
        return Batch(items, pixels)

    def inference(self, batch: Batch, *args, **kwargs) -> Batch:
        if batch.pixels is not None:
            start = time.perf_counter()
            batch.logits = self._forward(batch.pixels)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            batch.inference_ms = _ms(start)
        return batch

    def postprocess(self, batch: Batch) -> list:
        good = iter(range(0 if batch.logits is None else len(batch.logits)))
        answers = []
        for index, item in enumerate(batch.items):
            if item.error is not None:
                answers.append(self._error_answer(index, item.error))
                continue
            item.timings["inference"] = batch.inference_ms
            item.batch_size = len(batch.items)
            start = time.perf_counter()
            item.labels = photo_labels(
                batch.logits[next(good)], item.box, item.image.height, item.image.width
            )
            answers.append(self._answer(index, item, start))
        self._record_metrics(batch)
        return answers

    # -- per-request pieces -----------------------------------------------------------------
    def _prepare(self, index: int, row: dict) -> Item:
        item = Item()
        start = time.perf_counter()
        try:
            item.request = parse_request(
                row, self._header(index, "Accept"), self._header(index, TOLERANCE_HEADER)
            )
            item.image = decode_image(
                item.request.image, self.config.max_image_pixels, self.config.min_image_side
            )
        except InputError as exc:
            item.error = exc
        item.timings["preprocess"] = _ms(start)
        return item

    def _header(self, index: int, name: str) -> str | None:
        return self.context.get_request_header(index, name) if self.context else None

    def _letterbox(self, item: Item) -> np.ndarray:
        pixels, item.box = letterbox_image(
            item.image, self.spec.input_size, self.spec.mean, self.spec.std
        )
        return pixels

    def _answer(self, index: int, item: Item, start: float) -> bytes | str:
        """The body for the requested output (timed before the JSON that reports the times)."""
        output = item.request.output
        self._set_content_type(index, OUTPUTS[output])
        if output == "json":
            mask, overlay = mask_png(item.labels, self.spec.palette), self._overlay_jpeg(item)
            item.timings["postprocess"] = _ms(start)
            return json.dumps(self._result(item, mask, overlay))
        body = self._render(output, item)
        item.timings["postprocess"] = _ms(start)
        return body

    def _render(self, output: str, item: Item) -> bytes | str:
        """Every output but the full JSON answer."""
        labels, names = item.labels, self.spec.class_names
        match output:
            case "mask":
                return mask_png(labels, self.spec.palette)
            case "overlay":
                return self._overlay_jpeg(item)
            case "rle":
                return json.dumps({**self._frame(item), "masks": rle_masks(labels, names)})
            case _:  # polygons: a GeoJSON FeatureCollection, our fields beside its own
                features = polygon_features(
                    labels, names, self.spec.palette, item.request.tolerance
                )
                return json.dumps(
                    {
                        "type": "FeatureCollection",
                        "features": features,
                        **self._frame(item),
                        "tolerance": item.request.tolerance,
                    }
                )

    def _frame(self, item: Item) -> dict:
        """What every structured answer starts with: the model and the photo's size."""
        return {
            "model": {
                "name": self.spec.name,
                "version": self.version,
                "precision": self.precision,
                "training_data": self.spec.training_data.get("kind", "unknown"),
            },
            "width": item.image.width,
            "height": item.image.height,
        }

    def _overlay_jpeg(self, item: Item) -> bytes:
        image = overlay_image(item.image, item.labels, self.spec.palette, self.config.overlay_alpha)
        return encode(image, "jpeg", self.config.jpeg_quality)

    def _result(self, item: Item, mask: bytes, overlay: bytes) -> dict:
        found = class_stats(item.labels, self.spec.class_names)
        classes = zip(self.spec.class_names, self.spec.palette, strict=True)
        return {
            **self._frame(item),
            "classes": [{"id": i, "name": n, "color": c} for i, (n, c) in enumerate(classes)],
            "found": found,
            "foreground_fraction": round(sum(f["fraction"] for f in found), 6),
            "mask_png": b64(mask),
            "overlay_jpeg": b64(overlay),
            "batch_size": item.batch_size,
            "timings_ms": item.timings,
        }

    def _error_answer(self, index: int, error: InputError) -> str:
        self._set_content_type(index, "application/json")
        if self.context is not None:
            self.context.set_response_status(error.status, error.message, idx=index)
        return json.dumps({"code": error.status, "type": "InputError", "message": error.message})

    def _set_content_type(self, index: int, value: str) -> None:
        if self.context is not None:
            self.context.set_response_content_type(index, value)

    def _record_metrics(self, batch: Batch) -> None:
        metrics = getattr(self.context, "metrics", None)
        if metrics is None:
            return
        good = [item for item in batch.items if item.error is None]

        def dims() -> list[Dimension]:
            return [Dimension("ModelName", self.spec.name), Dimension("Level", "Model")]

        metrics.add_metric(
            "PetsegBatchSize", len(batch.items), None, "count", dims(), MetricTypes.GAUGE
        )
        metrics.add_counter("PetsegRejectedRequests", len(batch.items) - len(good), None, dims())
        if good:
            metrics.add_time("PetsegInferenceTime", batch.inference_ms, None, "ms", dims())
            for stage in ("preprocess", "postprocess"):
                mean = sum(item.timings[stage] for item in good) / len(good)
                metrics.add_time(f"Petseg{stage.title()}Time", round(mean, 2), None, "ms", dims())
