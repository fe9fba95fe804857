"""Ablation rows: what each speed mechanism of the handler gains, measured with its switch off.

    python -m bench.ablation [--export-dir exported/petseg] [--out bench/results]

Each mechanism has a switch in the ``handler:`` section of config/model-config.yaml. It is
measured in the configuration where it applies, the served settings otherwise unchanged:

- a lone request's latency (one photo at a time, nothing else running) for what serves the
  single user: every core for a lone request, the two encoders side by side;
- images/s of full batches on one worker's share of the cores for what serves load: the
  upsampling along outlines, the reduced JPEG decode, mixed precision;
- a worker's resident memory once a burst of 12-megapixel photos is over and the worker idle,
  for the memory releaser.

Latency and throughput rows run both handlers, switch on and off, in one process and alternate
between them in rounds, so a machine busy with something else slows both alike; the memory row
starts a process for each (a process's memory is the figure). ``make bench`` runs them for both
models after the in-process rows.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.inputs import SIZES, pet_photo
from bench.pipeline import LocalContext, local_handler
from handler.memory import resident_bytes
from handler.petseg_handler import PetSegHandler
from handler.spec import SPEC_FILENAME
from petseg.archive import MODEL_CONFIG
from petseg.launcher import ROOT

GAIN_TO_KEEP = 0.10
"""A mechanism that gains less than this where it applies does not pay for its code."""
IDLE_S = 1.5
"""Idle time after the burst before the memory is read: the releaser trims after 1 s."""


@dataclass(frozen=True)
class Ablation:
    switch: str
    """The ``handler:`` setting that turns the mechanism off when False."""
    measure: str
    """``lone_ms`` (lower is better), ``images_per_s`` or ``idle_rss_mb`` (lower is better)."""
    photo: str
    applies: str
    """Where the mechanism is meant to help: the configuration it is measured in."""
    base: tuple[tuple[str, object], ...] = ()
    """Handler settings of that configuration, besides the served ones."""


ABLATIONS = (
    Ablation("lone_request_every_core", "lone_ms", "500x375", "one user, idle machine"),
    Ablation(
        "onnx_for_lone_requests",
        "lone_ms",
        "500x375",
        "one user, fp32 network (a CPU without native bf16)",
        (("mixed_precision", False),),
    ),
    Ablation("parallel_mask_encoding", "lone_ms", "4000x3000", "one user, phone photos"),
    Ablation("upsample_along_outlines", "images_per_s", "4000x3000", "load of phone photos"),
    Ablation("reduced_jpeg_decode", "images_per_s", "4000x3000", "load of phone photos"),
    Ablation("mixed_precision", "images_per_s", "500x375", "load, CPU with native bf16"),
    Ablation("release_memory_after_bursts", "idle_rss_mb", "4000x3000", "after a burst"),
)


def _settings(served: dict, ablation: Ablation, on: bool) -> dict:
    settings = copy.deepcopy(served)
    settings["handler"] = {**settings.get("handler", {}), **dict(ablation.base)}
    settings["handler"][ablation.switch] = on
    return settings


Step = Callable[[PetSegHandler, LocalContext], int]
"""One unit of work on a handler; returns the images it handled."""


def _alternate(handlers: dict[bool, tuple], step: Step, rounds: int, seconds: float) -> dict:
    """Per switch state: the rate of each round (images/s), both states in every round."""
    rates: dict[bool, list[float]] = {True: [], False: []}
    for round_ in range(rounds):
        order = (True, False) if round_ % 2 == 0 else (False, True)
        for on in order:
            handler, context = handlers[on]
            images, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                images += step(handler, context)
            rates[on].append(images / (time.perf_counter() - start))
    return rates


def _in_process(model_dir: Path, served: dict, ablation: Ablation, photo: bytes, long: bool):
    handlers = {
        on: local_handler(model_dir, _settings(served, ablation, on)) for on in (True, False)
    }
    batch = 1 if ablation.measure == "lone_ms" else int(served["batchSize"])
    rows = [{"body": photo}] * batch

    def step(handler: PetSegHandler, context: LocalContext) -> int:
        handler.handle(rows, context)
        return batch

    for handler, context in handlers.values():
        step(handler, context)  # first call: allocations, caches
    rates = _alternate(handlers, step, 6 if long else 4, 3.0 if long else 1.5)
    if ablation.measure == "lone_ms":
        return {on: [1000 / rate for rate in values] for on, values in rates.items()}
    return rates


def _burst_rss(model_dir: Path, settings: dict, photo: bytes, out) -> None:
    handler, context = local_handler(model_dir, settings)
    rows = [{"body": photo}] * int(settings["batchSize"])
    for _ in range(2):
        handler.handle(rows, context)
    time.sleep(IDLE_S)
    out.put(resident_bytes() / 2**20)


def _idle_rss(model_dir: Path, served: dict, ablation: Ablation, photo: bytes, long: bool):
    spawn = multiprocessing.get_context("spawn")
    figures: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(3 if long else 2):
        for on in (True, False):
            out = spawn.Queue()
            settings = _settings(served, ablation, on)
            process = spawn.Process(target=_burst_rss, args=(model_dir, settings, photo, out))
            process.start()
            figures[on].append(out.get())
            process.join()
    return figures


def measure(model_dir: Path, served: dict, ablation: Ablation, long: bool = False) -> dict:
    """One ablation row: the figure with the switch on and off (median and range), and the gain
    (how much better on is than off: a ratio minus one)."""
    photo = pet_photo(*SIZES[ablation.photo])
    run = _idle_rss if ablation.measure == "idle_rss_mb" else _in_process
    figures = run(model_dir, served, ablation, photo, long)
    on, off = (statistics.median(figures[state]) for state in (True, False))
    lower_is_better = ablation.measure != "images_per_s"
    gain = (off / on if lower_is_better else on / off) - 1
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
        rows.append(measure(model_dir, served, ablation, long))
        print(line(rows[-1]), flush=True)
    return rows


def line(row: dict) -> str:
    verdict = "pays" if row["pays"] else f"UNDER {GAIN_TO_KEEP:.0%}"
    return (
        f"  {row['switch']:<28} {row['measure']:<12} {row['photo']:>9}  on {row['on']:>8.2f}"
        f"  off {row['off']:>8.2f}  gain {row['gain']:>+7.1%}  {verdict:<9} ({row['applies']})"
    )


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
    from bench.run import random_weights_model  # the bench's 256 px model; heavy imports

    served = yaml.safe_load(MODEL_CONFIG.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = random_weights_model(args.export_dir, Path(tmp) / "model", args.size)
        print(f"ablation, {args.size} px model, random weights:", flush=True)
        rows = measure_all(model_dir, served, args.long)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
