"""TorchServe's side of petseg: its handler template adapted to the pipeline.

handler/pipeline.py does the model's work (decode, letterbox, forward, labels, answers);
handler/runtime.py runs its forward pass fast on a worker. This class only translates:
TorchServe's worker context and request dicts in (settings, model directory, headers, form
fields), statuses, media types, headers, logs and metrics out. Another server would need an
adapter like this one and nothing else.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from ts.torch_handler.base_handler import BaseHandler

import handler
from handler import metrics
from handler.batch import Batch, Item
from handler.decoding import InputError
from handler.model import ServingModel, load_exported
from handler.model_card import model_card
from handler.payload import has_image, parse_request
from handler.pipeline import Answer, Pipeline
from handler.protocol import (
    MODEL_VERSION_HEADER,
    REQUEST_ID_HEADER,
    TOLERANCE_HEADER,
    valid_request_id,
)
from handler.runtime import WorkerRuntime
from handler.settings import HandlerConfig

logger = logging.getLogger(__name__)


class PetSegHandler(BaseHandler):
    """preprocess -> inference -> postprocess: the pipeline's three steps, one TorchServe
    batch at a time."""

    _describe_allowed = False

    def initialize(self, context) -> None:
        self.context = context  # TorchServe hands the same one to every batch
        properties = context.system_properties
        settings = context.model_yaml_config or {}
        config = HandlerConfig.from_yaml(settings.get("handler"))
        gpu = properties.get("gpu_id")
        use_cuda = torch.cuda.is_available() and gpu is not None
        device = torch.device(f"cuda:{gpu}" if use_cuda else "cpu")
        network, spec = load_exported(Path(properties["model_dir"]), device)
        model = ServingModel(network, device, config.mixed_precision)
        self.runtime = WorkerRuntime(model, config)
        self.runtime.warm_up(spec.input_size, int(properties.get("batch_size") or 1))
        # The archive's version (torch-model-archiver --version) is the one users manage.
        version = (context.manifest or {}).get("model", {}).get("modelVersion") or spec.version
        runtime = self.runtime
        self.pipeline = Pipeline(spec, runtime.forward, runtime.precision, str(version), config)
        logger.info(
            "petseg %s on %s, %d threads, input %dpx, %s, code from %s",
            self.pipeline.version,
            device,
            torch.get_num_threads(),
            spec.input_size,
            model.precision,
            Path(handler.__file__).parent,  # the archive's copy, not a checkout
        )
        self.initialized = True

    def handle(self, data: list[dict], context) -> list:
        """TorchServe's template; a describe is honoured only as TorchServe's management API
        sends it (one request, no image), so an inference client that adds a ``describe``
        header cannot swap its batch's answers for a model card."""
        self._describe_allowed = len(data) == 1 and not has_image(data[0])
        with self.runtime.batch():
            return super().handle(data, context)

    def _is_describe(self) -> bool:
        return self._describe_allowed and super()._is_describe()

    def describe_handle(self) -> str:
        """The model card (`GET /models/petseg?customized=true`): what the model is, from the
        spec, without file paths."""
        pipeline = self.pipeline
        return json.dumps(model_card(pipeline.spec, pipeline.version, pipeline.precision))

    # -- template steps -------------------------------------------------------------------
    def preprocess(self, data: list[dict]) -> Batch:
        return self.pipeline.prepare([self._item(index, row) for index, row in enumerate(data)])

    def inference(self, batch: Batch, *args, **kwargs) -> Batch:
        return self.pipeline.infer(batch)

    def postprocess(self, batch: Batch) -> list:
        answers = self.pipeline.answer(batch)
        for index, (item, answer) in enumerate(zip(batch.items, answers, strict=True)):
            self._respond(index, answer)
            self._log(item, answer)
        if getattr(self.context, "metrics", None) is not None:
            spec = self.pipeline.spec
            metrics.record(
                self.context.metrics, batch, spec.name, self.pipeline.version, spec.class_names
            )
        return [answer.body for answer in answers]

    # -- TorchServe's request and response ---------------------------------------------------
    def _item(self, index: int, row: dict) -> Item:
        """A request as the pipeline takes it: its id, and what it asks for or what is wrong."""
        item = Item(request_id=self._request_id(index))
        try:
            item.request = parse_request(
                row, self._header(index, "Accept"), self._header(index, TOLERANCE_HEADER)
            )
        except InputError as exc:
            item.error = exc
        return item

    def _header(self, index: int, name: str) -> str | None:
        return self.context.get_request_header(index, name) if self.context else None

    def _request_id(self, index: int) -> str:
        """The caller's X-Request-ID (the proxy always sends one), else TorchServe's id."""
        given = valid_request_id(self._header(index, REQUEST_ID_HEADER))
        if given is None and self.context is not None:
            given = self.context.get_request_id(index)
        return given or ""

    def _respond(self, index: int, answer: Answer) -> None:
        if self.context is None:
            return
        self.context.set_response_header(index, MODEL_VERSION_HEADER, self.pipeline.version)
        self.context.set_response_content_type(index, answer.media_type)
        if answer.status != 200:
            self.context.set_response_status(answer.status, answer.message, idx=index)

    def _log(self, item: Item, answer: Answer) -> None:
        """One line per request: its id ties it to the proxy's log and TorchServe's."""
        if answer.status != 200:
            what = f"answered {answer.status}"
        else:
            what = (
                f"{item.request.output} of {item.width}x{item.height}, batch of "
                f"{item.batch_size}, foreground {item.quality.foreground_fraction:.3f}"
            )
        logger.info("request %s, petseg %s: %s", item.request_id, self.pipeline.version, what)
