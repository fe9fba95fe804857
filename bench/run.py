"""`make bench`: the pipeline limit, a naive server, TorchServe direct and through the proxy.

    python -m bench.run [--export-dir exported/petseg] [--long] [--out bench/results]

Two models: the trained demo model (96 px) and a 256 px model (the real-data input size) with
random weights, built for the speed rows and never shipped (bench/speed_model.py). Two photos:
500x375 like Oxford-IIIT Pet, and 4000x3000 like a phone. Everything runs on this machine, one
thing at a time: first in-process (the bare model's forward pass, then the whole handler
pipeline in the served configuration; here), then each server alone, loaded by a client in its
own process (bench/served.py). Every served row is printed as a ratio to the pipeline limit and
to the naive server (bench/report.py); the results go to bench/results/ as JSON and a PNG chart.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from bench import ablation, report
from bench.agreement import batched_agreement
from bench.inputs import SIZES, pet_photo
from bench.limit import measure_limits
from bench.naive_baseline import NaiveSegmenter
from bench.pipeline import PipelineRun, pipeline_limit, served_settings
from bench.served import measure_naive, measure_torchserve
from bench.speed_model import random_weights_model
from bench.under_test import Model, Workload
from handler.spec import SPEC_FILENAME, ModelSpec
from petseg.serving.launcher import ROOT

AGREEMENT_PHOTOS = {"500x375": 8, "4000x3000": 2}


def load_plan(long: bool) -> list[tuple[str, int, int]]:
    """(photo, concurrency, requests): enough requests for stable medians, a few minutes."""
    scale = 4 if long else 1
    plan = [("500x375", c, scale * n) for c, n in ((1, 48), (4, 64), (16, 320))]
    plan += [("4000x3000", c, scale * n) for c, n in ((1, 16), (4, 16), (16, 32))]
    return plan


def decode_ms(data: bytes, calls: int = 9) -> float:
    """One full decode of the photo by PIL: the yardstick of the handler's image work."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        Image.open(io.BytesIO(data)).load()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2)


def measure_in_process(model: Model, settings: dict, device: str, work: Workload, long: bool):
    """The bare model's forward pass (every core), then the handler's whole pipeline."""
    naive = NaiveSegmenter(model.export_dir, device)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    size = naive.spec.input_size
    print(f"{model.name}: forward pass at {size}x{size} on {device}", flush=True)
    model.results["limits"] = measure_limits(
        naive.model, size, [1, settings["batchSize"]], 8 if long else 2
    )
    for row in model.results["limits"]:
        print(report.limit_line(row), flush=True)
    if model.trained:
        work.reference = {
            photo: [naive.labels(data) for data in checks] for photo, checks in work.checks.items()
        }
        model.results["mask_agreement_vs_fp32_eager"][report.BATCHED] = batched_agreement(
            model.export_dir, settings, work
        )
    del naive
    model.results["pipeline"] = {}
    for photo, data in work.photos.items():
        run = PipelineRun(model.export_dir, settings, data, 6 if long else 3, 3)
        model.results["pipeline"][photo] = pipeline_limit(run)
        print(report.pipeline_line(photo, model.results["pipeline"][photo]), flush=True)
    print(f"{model.name}: speed mechanisms, each on against off", flush=True)
    model.results["ablation"] = ablation.measure_all(model.export_dir, settings, long)


def measure_model(model: Model, settings: dict, device: str, work: Workload, long: bool) -> None:
    model.results.update(loads=[], mask_agreement_vs_fp32_eager={})
    model.results["input_size"] = ModelSpec.load(model.export_dir).input_size
    measure_in_process(model, settings, device, work, long)
    measure_naive(model, device, work)
    with tempfile.TemporaryDirectory() as tmp:
        measure_torchserve(model, Path(tmp), work)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export-dir", type=Path, default=ROOT / "exported" / "petseg")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--long", action="store_true", help="4x the requests and limit time")
    args = parser.parse_args(argv)
    if not (args.export_dir / SPEC_FILENAME).is_file():
        print(f"no exported model in {args.export_dir}: run `make train-demo`", file=sys.stderr)
        return 2

    started = time.monotonic()
    settings = served_settings()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    photos = {name: pet_photo(*wh) for name, wh in SIZES.items()}
    work = Workload(
        photos=photos,
        plan=load_plan(args.long),
        checks={
            photo: [pet_photo(*SIZES[photo], seed=seed) for seed in range(1, 1 + count)]
            for photo, count in AGREEMENT_PHOTOS.items()
        },
    )
    serving = {k: settings[k] for k in ("workers", "batchSize", "maxBatchDelay", "handler")}
    results = {
        "machine": report.machine(),
        "device": device,
        "serving": serving,
        "decode_ms": {photo: decode_ms(data) for photo, data in photos.items()},
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        models = [
            Model("demo model, 96 px", args.export_dir, trained=True),
            Model(
                "256 px, random weights",
                random_weights_model(args.export_dir, Path(tmp) / "random-256"),
                trained=False,
            ),
        ]
        for model in models:
            measure_model(model, settings, device, work, args.long)
            results["models"][model.name] = {"trained": model.trained, **model.results}
    results["seconds"] = round(time.monotonic() - started, 1)
    results["targets"] = report.targets(results)
    save(results, args.out)
    return 0


def save(results: dict, out: Path) -> None:
    """bench.json and bench.png, and the table on stdout."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    report.chart(results, out / "bench.png")
    print("\n" + "\n".join(report.table(results)))
    print(f"\nsaved {out / 'bench.json'} and {out / 'bench.png'} ({results['seconds']:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
