"""TorchServe handler for petseg: batched U-Net segmentation of cats and dogs.

One TorchServe batch = one forward pass. Each request is decoded and letterboxed on its own, so
a bad upload becomes a 4xx answer for that request only while the rest of the batch is served.
Answers: JSON with a palette-PNG mask, an overlay, class statistics and timings, or (a form
field ``output`` = ``mask`` / ``overlay``, or ``Accept: image/png`` / ``image/jpeg``) the image
alone. Each request is logged under its id (the caller's X-Request-ID, else TorchServe's) and
each batch's metrics, the masks' quality included, go to TorchServe (handler/metrics.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from ts.torch_handler.base_handler import BaseHandler

import handler
from handler import metrics
from handler.batch import Batch, Item
from handler.decoding import InputError, decode_photo
from handler.imaging import letterbox_image
from handler.lone_forward import Forward, faster_lone_forward
from handler.memory import MemoryReleaser
from handler.model import ServingModel, load_exported, photo_labels
from handler.model_card import model_card
from handler.payload import has_image, parse_request
from handler.protocol import (
    MODEL_VERSION_HEADER,
    OUTPUTS,
    REQUEST_ID_HEADER,
    TOLERANCE_HEADER,
    valid_request_id,
)
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
from handler.threads import BusyWorkers, ThreadPlan

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
        workers = int((context.model_yaml_config or {}).get("minWorkers", 1))
        self.threads = ThreadPlan.for_worker(
            self.config.threads, workers, self.config.lone_request_every_core
        )
        self.workers = BusyWorkers()
        if not use_cuda:
            torch.set_num_threads(self.threads.shared)
        model, self.spec = load_exported(Path(properties["model_dir"]), self.device)
        self.model = ServingModel(model, self.device, self.config.mixed_precision)
        # The archive's version (torch-model-archiver --version) is the one users manage.
        self.version = str(
            (context.manifest or {}).get("model", {}).get("modelVersion") or self.spec.version
        )
        self._warm_up(int(properties.get("batch_size") or 1))
        self.lone_forward = None
        if not use_cuda:
            self.lone_forward = self._lone_runtime(Path(properties["model_dir"]))
        self.memory = None
        if self.config.release_memory_after_bursts:
            self.memory = MemoryReleaser(self.config.memory_margin_mb << 20)
        self._mask_encoder = ThreadPoolExecutor(1, thread_name_prefix="mask-png")
        logger.info(
            "petseg %s on %s, %d threads, input %dpx, %s, code from %s",
            self.version,
            self.device,
            torch.get_num_threads(),
            self.spec.input_size,
            self.model.precision,
            Path(handler.__file__).parent,  # the archive's copy, not a checkout
        )
        self.initialized = True

    def handle(self, data: list[dict], context) -> list:
        """TorchServe's template; a describe is honoured only as TorchServe's management API
        sends it (one request, no image), so an inference client that adds a ``describe``
        header cannot swap its batch's answers for a model card."""
        self._describe_allowed = len(data) == 1 and not has_image(data[0])
        releasing = self.memory.working() if self.memory else contextlib.nullcontext()
        with self.workers.busy(), releasing:
            return super().handle(data, context)

    def _is_describe(self) -> bool:
        return self._describe_allowed and super()._is_describe()

    def describe_handle(self) -> str:
        """The model card (`GET /models/petseg?customized=true`): what the model is, from the
        spec, without file paths."""
        return json.dumps(model_card(self.spec, self.version, self.model.precision))

    def _warm_up(self, batch_size: int) -> None:
        """The first forward pass is several times slower (allocations, kernel choice)."""
        size = self.spec.input_size
        for n in sorted({1, batch_size}):
            self.model(torch.zeros(n, 3, size, size, device=self.device))

    def _lone_runtime(self, model_dir: Path) -> Forward | None:
        """A lone request's forward pass on a CPU: torch warmed up with every core, and ONNX
        Runtime's when measured clearly faster (handler/lone_forward.py). Only an fp32 network
        is measured against it: a bf16 one at batch 1 was within 15% of ONNX Runtime's fp32
        with the 96 px model and 2.5x faster at 256 px, and the trial (an export in a child
        process) would only slow every worker's start."""
        size = self.spec.input_size
        with self.workers.alone():
            torch.set_num_threads(self.threads.lone)
            self.model(torch.zeros(1, 3, size, size))  # kernels for this thread count
            faster = None
            if self.config.onnx_for_lone_requests and self.model.dtype == torch.float32:
                faster = faster_lone_forward(model_dir, size, self.threads.lone, self.model)
            torch.set_num_threads(self.threads.shared)
        return faster

    # -- template steps -------------------------------------------------------------------
    def preprocess(self, data: list[dict]) -> Batch:
        items = [self._prepare(index, row) for index, row in enumerate(data)]
        good = [item for item in items if item.error is None]
        pixels = None
        if good:
            start = time.perf_counter()
            arrays = [self._letterbox(item) for item in good]
            pixels = torch.from_numpy(np.stack(arrays)).to(self.device)
            share = _ms(start) / len(good)
            for item in good:
                item.timings["preprocess"] = round(item.timings["preprocess"] + share, 2)
        return Batch(items, pixels)

    def inference(self, batch: Batch, *args, **kwargs) -> Batch:
        if batch.pixels is not None:
            lone = False  # and every core ours: no other worker busy
            if self.device.type == "cpu":
                requests = len(batch.items)
                # the other workers matter only to a lone request: no lock probing otherwise
                lone_may_gain = requests == 1 and self.threads.lone > self.threads.shared
                others = self.workers.others_busy() if lone_may_gain else 0
                threads = self.threads.threads(requests, others)
                torch.set_num_threads(threads)
                lone = requests == 1 and threads == self.threads.lone
            start = time.perf_counter()
            if lone and self.lone_forward is not None:
                batch.logits, batch.precision = self.lone_forward(batch.pixels), "float32"
            else:
                batch.logits, batch.precision = self.model(batch.pixels), self.model.precision
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            batch.inference_ms, batch.lone = _ms(start), lone
        return batch

    def postprocess(self, batch: Batch) -> list:
        good = iter(range(0 if batch.logits is None else len(batch.logits)))
        answers = []
        for index, item in enumerate(batch.items):
            self._set_header(index, MODEL_VERSION_HEADER, self.version)
            if item.error is not None:
                answers.append(self._error_answer(index, item))
                self._log(item, f"answered {item.error.status}")
                continue
            item.timings["inference"] = batch.inference_ms
            item.precision, item.spare_core = batch.precision, batch.lone
            item.batch_size = len(batch.items)
            start = time.perf_counter()
            logits = batch.logits[next(good)]
            height, width = item.height, item.width
            item.labels, regions = photo_labels(
                logits, item.box, height, width, self.config.upsample_along_outlines
            )
            item.found = class_stats(regions, self.spec.class_names, height * width)
            item.quality = mask_quality(logits, item.box)
            answers.append(self._answer(index, item, start))
            self._log(
                item,
                f"{item.request.output} of {item.width}x{item.height}, batch of "
                f"{item.batch_size}, foreground {item.quality.foreground_fraction:.3f}",
            )
        if getattr(self.context, "metrics", None) is not None:
            metrics.record(
                self.context.metrics, batch, self.spec.name, self.version, self.spec.class_names
            )
        return answers

    # -- per-request pieces -----------------------------------------------------------------
    def _prepare(self, index: int, row: dict) -> Item:
        item = Item(request_id=self._request_id(index))
        start = time.perf_counter()
        try:
            item.request = parse_request(
                row, self._header(index, "Accept"), self._header(index, TOLERANCE_HEADER)
            )
            photo = decode_photo(
                item.request.image,
                self.config.max_image_pixels,
                self.config.min_image_side,
                self.config.overlay_max_side,
                self.config.reduced_jpeg_decode,
            )
            item.image, item.width, item.height = photo.image, photo.width, photo.height
        except InputError as exc:
            item.error = exc
        item.timings["preprocess"] = _ms(start)
        return item

    def _header(self, index: int, name: str) -> str | None:
        return self.context.get_request_header(index, name) if self.context else None

    def _request_id(self, index: int) -> str:
        """The caller's X-Request-ID (the proxy always sends one), else TorchServe's id."""
        given = valid_request_id(self._header(index, REQUEST_ID_HEADER))
        if given is None and self.context is not None:
            given = self.context.get_request_id(index)
        return given or ""

    def _log(self, item: Item, what: str) -> None:
        """One line per request: its id ties it to the proxy's log and TorchServe's."""
        logger.info("request %s, petseg %s: %s", item.request_id, self.version, what)

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
            if (
                item.spare_core and self.config.parallel_mask_encoding
            ):  # PIL's encoders let go of the GIL: the two run side by side
                mask_encoded = self._mask_encoder.submit(mask_png, item.labels, self.spec.palette)
                overlay = self._overlay_jpeg(item)
                mask = mask_encoded.result()
            else:
                mask, overlay = mask_png(item.labels, self.spec.palette), self._overlay_jpeg(item)
            item.timings["postprocess"] = _ms(start)
            return json.dumps(self._result(item, mask, overlay))
        body = self._render(output, item)
        item.timings["postprocess"] = _ms(start)
        return body

    def _render(self, output: str, item: Item) -> bytes | str:
        """Every output but the full JSON answer."""
        labels, found = item.labels, item.found
        match output:
            case "mask":
                return mask_png(labels, self.spec.palette)
            case "overlay":
                return self._overlay_jpeg(item)
            case "rle":
                return json.dumps({**self._frame(item), "masks": rle_masks(labels, found)})
            case _:  # polygons: a GeoJSON FeatureCollection, our fields beside its own
                features = polygon_features(
                    labels, found, self.spec.palette, item.request.tolerance
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
                "precision": item.precision,
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

    def _result(self, item: Item, mask: bytes, overlay: bytes) -> dict:
        found = item.found
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

    def _error_answer(self, index: int, item: Item) -> str:
        error = item.error
        self._set_content_type(index, "application/json")
        if self.context is not None:
            self.context.set_response_status(error.status, error.message, idx=index)
        return json.dumps(
            {
                "code": error.status,
                "type": "InputError",
                "message": error.message,
                "request_id": item.request_id,
            }
        )

    def _set_content_type(self, index: int, value: str) -> None:
        if self.context is not None:
            self.context.set_response_content_type(index, value)

    def _set_header(self, index: int, name: str, value: str) -> None:
        if self.context is not None:
            self.context.set_response_header(index, name, value)
