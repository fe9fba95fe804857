"""The pipeline limit: the handler's whole work, in-process, with no HTTP and no TorchServe.

decode -> letterbox -> forward -> labels -> mask PNG + overlay JPEG -> the JSON answer, run by
the handler itself (``PetSegHandler.handle``) on batches of the configured size, in as many
processes as the configuration has workers, each with the threads the handler gives itself: the
served configuration minus the server. What a served row loses against it is the price of
TorchServe's frontend, its IPC and HTTP, and of the load generator sharing the machine.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from handler.petseg_handler import PetSegHandler


class _NoMetrics:
    """TorchServe's metrics cache, reduced to the calls the handler makes, which do nothing
    (the handler's own work for them, the figures, is still done and timed)."""

    def add_time(self, *args: object, **kwargs: object) -> None:
        pass

    def get_metric(self, *args: object) -> _NoMetrics:
        return self

    def add_or_update(self, *args: object) -> None:
        pass


class LocalContext:
    """The parts of TorchServe's worker context the handler reads, for running it in-process."""

    def __init__(self, model_dir: Path, settings: dict, version: str = "1.0") -> None:
        self.system_properties = {
            "model_dir": str(model_dir),
            "gpu_id": None,
            "batch_size": settings.get("batchSize", 1),
        }
        self.manifest = {"model": {"modelName": "petseg", "modelVersion": version}}
        self.model_yaml_config = settings
        self.metrics = _NoMetrics()
        self.headers: dict[int, dict[str, str]] = {}

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self.headers.get(idx, {}).get(key)

    def get_request_id(self, idx: int = 0) -> str:
        return f"local-{idx}"

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        pass

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        pass

    def set_response_content_type(self, idx: int, value: str) -> None:
        pass


def local_handler(model_dir: Path, settings: dict) -> tuple[PetSegHandler, LocalContext]:
    """A handler initialised as a worker would initialise it (threads, precision, warm-up)."""
    context = LocalContext(model_dir, settings)
    handler = PetSegHandler()
    handler.initialize(context)
    return handler, context


@dataclass(frozen=True)
class PipelineRun:
    """One measurement: ``photo`` through the handler for ``seconds``, ``repeats`` times."""

    model_dir: Path
    settings: dict
    photo: bytes
    seconds: float
    repeats: int


def _worker(run: PipelineRun, barrier, rates) -> None:
    handler, context = local_handler(run.model_dir, run.settings)
    rows = [{"body": run.photo}] * run.settings["batchSize"]
    handler.handle(rows, context)  # a first full batch: allocations, caches
    for repeat in range(run.repeats):
        barrier.wait()
        images, start = 0, time.perf_counter()
        while time.perf_counter() - start < run.seconds:
            handler.handle(rows, context)
            images += len(rows)
        rates.put((repeat, images / (time.perf_counter() - start)))


def pipeline_limit(run: PipelineRun) -> dict[str, float]:
    """Images/s of the configured workers together: median over repeats, and the spread.

    The workers start each repeat together (a barrier) and each counts its own images, so a
    repeat's rate is the sum of theirs."""
    workers = int(run.settings.get("minWorkers", 1))
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
