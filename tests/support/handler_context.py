"""The handler driven as a TorchServe worker drives it: TorchServe's own context, request
processors and metrics cache (bench/pipeline.py builds them), and what a test reads back."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.pipeline import handle_batch, local_handler
from handler.petseg_handler import PetSegHandler

METRIC_LINE = re.compile(
    r"\[METRICS\](?P<name>\w+)\.\w+:(?P<value>[-\d.e]+)\|#(?P<dims>[^|]*)\|#type:(?P<type>\w+)"
    r"\|#hostname:[^,]*,\d+(?:,(?P<request_id>.*))?"
)


def handler_for(model_dir: Path, yaml: dict | None = None, batch_size: int = 4) -> PetSegHandler:
    """A handler initialised by TorchServe's context for ``model_dir``, with these settings."""
    return local_handler(model_dir, {"batchSize": batch_size, **(yaml or {})})


@dataclass
class Metrics:
    emitted: list[tuple] = field(default_factory=list)
    """(name, type, value, dimension values, request id), as the metrics log lines say."""

    @property
    def recorded(self) -> dict[str, float]:
        """The last value of each metric."""
        return {name: value for name, _, value, _, _ in self.emitted}


@dataclass
class Served:
    """A batch's answers and what the handler set on TorchServe's context for them."""

    statuses: dict[int, tuple[int, str]]
    """The requests answered with another status than 200: (status, phrase)."""
    content_types: dict[int, str]
    response_headers: dict[int, dict[str, str]]
    metrics: Metrics


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def _metric_lines() -> Iterator[list[str]]:
    """The lines TorchServe's metrics cache logs (what its frontend parses into metrics)."""
    logger = logging.getLogger("ts.metrics.caching_metric")
    lines, level = _Lines(), logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        yield lines.lines
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)


def _parse(line: str) -> tuple:
    match = METRIC_LINE.fullmatch(line)
    assert match, f"not a TorchServe metrics line: {line}"
    dims = [pair.split(":", 1)[1] for pair in match["dims"].split(",")]
    value = float(match["value"])
    return match["name"], match["type"], value, dims, match["request_id"] or ""


def run(
    handler: PetSegHandler, rows: list[dict], headers: dict[int, dict[str, str]] | None = None
) -> tuple[list, Served]:
    """One batch through ``handler.handle``, on the context the handler was initialised with."""
    context = handler.context
    by_position = [(headers or {}).get(index, {}) for index in range(len(rows))]
    with _metric_lines() as lines:
        answers = handle_batch(handler, rows, by_position)
    statuses = {}
    for index in range(len(rows)):
        code, phrase = context.get_response_status(index)
        if code != 200:
            statuses[index] = (code, phrase)
    headers_set = {index: context.get_response_headers(index) for index in range(len(rows))}
    return answers, Served(
        statuses,
        {i: h["content-type"] for i, h in headers_set.items() if "content-type" in h},
        headers_set,
        Metrics([_parse(line) for line in lines if line.startswith("[METRICS]")]),
    )
