"""Ablation rows: what each speed mechanism of the handler gains, measured with its switch off.

    python -m bench.ablation [--export-dir exported/petseg] [--out bench/results]

Each mechanism has a switch in the ``handler:`` section of config/model-config.yaml. It is
measured in the configuration where it applies, the served settings otherwise unchanged: a
lone request's latency (one photo at a time, nothing else running) for what serves the single
user (every core for a lone request), images/s of full batches on one worker's share of the
cores for what serves load (the upsampling along outlines, mixed precision); the reduced JPEG
decode of phone photos serves both and gets both rows.

Both handlers, switch on and off, run in one process and take turns in rounds, so a machine
busy with something else slows both alike. ``make bench`` runs the rows for both models after
the in-process rows; docs/performance.md keeps the figures of mechanisms removed for gaining
less than ``GAIN_TO_KEEP`` (a target of bench/report.py, which also writes the rows' lines).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.inputs import SIZES, pet_photo
from bench.pipeline import handle_batch, local_handler, released, served_settings
from bench.report import GAIN_TO_KEEP, ablation_line
from bench.speed_model import random_weights_model
from handler.petseg_handler import PetSegHandler
from handler.spec import SPEC_FILENAME
from handler.threads import idle_workers
from petseg.serving.launcher import ROOT


@dataclass(frozen=True)
class Ablation:
    switch: str
    """The ``handler:`` setting that turns the mechanism off when False."""
    measure: str
    """``lone_ms`` (lower is better) or ``images_per_s``."""
    photo: str
    applies: str
    """Where the mechanism is meant to help: the configuration it is measured in."""


ABLATIONS = (
    Ablation("lone_request_every_core", "lone_ms", "500x375", "one user, idle machine"),
    Ablation("upsample_along_outlines", "images_per_s", "4000x3000", "load of phone photos"),
    Ablation("reduced_jpeg_decode", "lone_ms", "4000x3000", "one user, phone photo"),
    Ablation("reduced_jpeg_decode", "images_per_s", "4000x3000", "load of phone photos"),
    Ablation("mixed_precision", "images_per_s", "500x375", "load, CPU with native bf16"),
)


def _settings(served: dict, ablation: Ablation, on: bool) -> dict:
    settings = copy.deepcopy(served)
    settings.setdefault("handler", {})[ablation.switch] = on
    return settings


Step = Callable[[PetSegHandler], int]
"""One unit of work on a handler; returns the images it handled."""


def _alternate(
    handlers: dict[bool, PetSegHandler], step: Step, rounds: int, seconds: float
) -> dict:
    """Per switch state: the rate of each round (images/s), both states in every round."""
    rates: dict[bool, list[float]] = {True: [], False: []}
    for round_ in range(rounds):
        order = (True, False) if round_ % 2 == 0 else (False, True)
        for on in order:
            handler = handlers[on]
            images, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                images += step(handler)
            rates[on].append(images / (time.perf_counter() - start))
    return rates


def _in_process(
    model_dir: Path, served: dict, ablation: Ablation, photo: bytes, rounds: int, seconds: float
):
    batch = 1 if ablation.measure == "lone_ms" else int(served["batchSize"])
    rows = [{"body": photo}] * batch

    def step(handler: PetSegHandler) -> int:
        return len(handle_batch(handler, rows))

    # The served configuration's other workers, alive and idle: the handlers' thread plans
    # count them, so each batch gets one worker's share of the cores (a lone one all of them).
    with (
        idle_workers(int(served["workers"]) - 1),
        released(local_handler(model_dir, _settings(served, ablation, True))) as on,
        released(local_handler(model_dir, _settings(served, ablation, False))) as off,
    ):
        handlers = {True: on, False: off}
        for handler in handlers.values():
            step(handler)  # first call: allocations, caches
        rates = _alternate(handlers, step, rounds, seconds)
    if ablation.measure == "lone_ms":
        return {on: [1000 / rate for rate in values] for on, values in rates.items()}
    return rates


def measure(
    model_dir: Path, served: dict, ablation: Ablation, rounds: int = 4, seconds: float = 1.5
) -> dict:
    """One ablation row: the figure with the switch on and off (median and range over
    ``rounds`` of ``seconds`` each), and the gain (how much better on is than off: a ratio
    minus one)."""
    photo = pet_photo(*SIZES[ablation.photo])
    figures = _in_process(model_dir, served, ablation, photo, rounds, seconds)
    on, off = (statistics.median(figures[state]) for state in (True, False))
    gain = (off / on if ablation.measure == "lone_ms" else on / off) - 1
    return {
        "switch": ablation.switch,
        "measure": ablation.measure,
        "photo": ablation.photo,
        "applies": ablation.applies,
        "on": round(on, 2),
        "off": round(off, 2),
        "on_range": [round(min(figures[True]), 2), round(max(figures[True]), 2)],
        "off_range": [round(min(figures[False]), 2), round(max(figures[False]), 2)],
        "gain": round(gain, 3),
        "pays": gain >= GAIN_TO_KEEP,
    }


def measure_all(model_dir: Path, served: dict, long: bool = False) -> list[dict]:
    rows = []
    for ablation in ABLATIONS:
        rows.append(measure(model_dir, served, ablation, *((6, 3.0) if long else (4, 1.5))))
        print(ablation_line(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export-dir", type=Path, default=ROOT / "exported" / "petseg")
    parser.add_argument("--size", type=int, default=256, help="input size of a random model")
    parser.add_argument("--long", action="store_true", help="more and longer rounds")
    parser.add_argument("--out", type=Path, help="write the rows here as JSON")
    args = parser.parse_args(argv)
    if not (args.export_dir / SPEC_FILENAME).is_file():
        print(f"no exported model in {args.export_dir}: run `make train-demo`", file=sys.stderr)
        return 2

    served = served_settings()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = random_weights_model(args.export_dir, Path(tmp) / "model", args.size)
        print(f"ablation, {args.size} px model, random weights:", flush=True)
        rows = measure_all(model_dir, served, args.long)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
