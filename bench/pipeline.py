"""The pipeline limit: the handler's whole work, in-process, with no HTTP and no TorchServe.

decode -> letterbox -> forward -> labels -> mask PNG + overlay JPEG -> the JSON answer, run by
the handler itself (``PetSegHandler.handle``) on batches of the configured size, in as many
processes as the configuration has workers, each with the threads the handler gives itself: the
served configuration minus the server. What a served row loses against it is the price of
TorchServe's frontend, its IPC and HTTP, and of the load generator sharing the machine.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import statistics
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from ts.context import Context, RequestProcessor
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl

from handler.petseg_handler import PetSegHandler
from handler.protocol import MODEL_NAME
from petseg.packaging.archive import MODEL_CONFIG
from petseg.serving.launcher import METRICS_CONFIG, default_workers


def served_settings() -> dict:
    """What a worker of the served configuration is given (config/model-config.yaml), with
    ``workers``: how many serve a version whose state names none (the bench's instance)."""
    return {**yaml.safe_load(MODEL_CONFIG.read_text()), "workers": default_workers()}


def worker_context(model_dir: Path, settings: dict, version: str = "1.0") -> Context:
    """TorchServe's own worker context, as a worker builds it for ``model_dir`` (its metrics
    cache reads config/metrics.yaml: a metric the handler emits undeclared fails here too)."""
    with warnings.catch_warnings():  # it reads the file without closing it
        warnings.simplefilter("ignore", ResourceWarning)
        metrics = MetricsCacheYamlImpl(config_file_path=str(METRICS_CONFIG))
    metrics.initialize_cache()
    metrics.model_name = MODEL_NAME
    manifest = {"model": {"modelName": MODEL_NAME, "modelVersion": version}}
    batch_size = settings.get("batchSize", 1)
    return Context(
        MODEL_NAME, str(model_dir), manifest, batch_size, None, "0.12.0", True, metrics, settings
    )


def local_handler(model_dir: Path, settings: dict) -> PetSegHandler:
    """A handler initialised as a worker would initialise it (threads, precision, warm-up), on
    TorchServe's own context, which it keeps as ``handler.context``."""
    handler = PetSegHandler()
    handler.initialize(worker_context(model_dir, settings))
    return handler


@contextlib.contextmanager
def released(handler: PetSegHandler) -> Iterator[PetSegHandler]:
    """``handler`` for a measurement, no longer counted as one of the machine's workers after
    it: the bench's own process would otherwise shrink its TorchServe workers' thread shares."""
    try:
        yield handler
    finally:
        handler.runtime.close()


def handle_batch(
    handler: PetSegHandler, rows: list[dict], headers: list[dict[str, str]] | None = None
) -> list:
    """One batch through the handler as a worker hands it over (ts/service.py ``predict``):
    each request's headers (by position; none by default) and id set on the context, then
    ``handle``. Every in-process caller goes through here, so none can forget the context."""
    context = handler.context
    ids = {index: f"torchserve-{index}" for index in range(len(rows))}
    context.request_ids = ids
    context.request_processor = [RequestProcessor(dict(h)) for h in headers or [{}] * len(rows)]
    context.metrics.request_ids = ids
    return handler.handle(rows, context)


@dataclass(frozen=True)
class PipelineRun:
    """One measurement: ``photo`` through the handler for ``seconds``, ``repeats`` times."""

    model_dir: Path
    settings: dict
    photo: bytes
    seconds: float
    repeats: int


def _worker(run: PipelineRun, barrier, rates) -> None:
    handler = local_handler(run.model_dir, run.settings)
    rows = [{"body": run.photo}] * run.settings["batchSize"]
    handle_batch(handler, rows)  # a first full batch: allocations, caches
    for repeat in range(run.repeats):
        barrier.wait()
        images, start = 0, time.perf_counter()
        while time.perf_counter() - start < run.seconds:
            images += len(handle_batch(handler, rows))
        rates.put((repeat, images / (time.perf_counter() - start)))


def pipeline_limit(run: PipelineRun) -> dict[str, float]:
    """Images/s of the configured workers together: median over repeats, and the spread.

    The workers start each repeat together (a barrier) and each counts its own images, so a
    repeat's rate is the sum of theirs."""
    workers = int(run.settings["workers"])
    context = multiprocessing.get_context("spawn")
    barrier, rates = context.Barrier(workers), context.Queue()
    processes = [
        context.Process(target=_worker, args=(run, barrier, rates)) for _ in range(workers)
    ]
    for process in processes:
        process.start()
    totals = [0.0] * run.repeats
    for _ in range(workers * run.repeats):
        repeat, rate = rates.get()
        totals[repeat] += rate
    for process in processes:
        process.join()
    return {
        "images_per_s": round(statistics.median(totals), 2),
        "min": round(min(totals), 2),
        "max": round(max(totals), 2),
        "repeats": run.repeats,
        "workers": workers,
    }
