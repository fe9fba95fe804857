"""`make bench`: the model's limit, a naive server, TorchServe direct and through the proxy.

    python -m bench.run [--export-dir exported/petseg] [--long] [--out bench/results]

Everything runs on this machine, one thing at a time: the bare model in-process first, then
each server alone, loaded by a client in a separate process with deterministic pet photos
(500x375 like Oxford-IIIT Pet, 4000x3000 like a phone). Prints one table, with every
throughput also as a ratio to the limit's first row, and saves it as JSON and a PNG chart.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import requests
import torch
import yaml
from PIL import Image

from bench import report
from bench.inputs import SIZES, pet_photo
from bench.limit import measure_limits
from bench.loadgen import Target, TorchServeTarget, measure
from bench.naive_baseline import NaiveSegmenter
from handler.spec import SPEC_FILENAME
from petseg.archive import MODEL_CONFIG, build_archive
from petseg.demo import external_command, web_environment
from petseg.launcher import ROOT, Instance, free_ports, start, stop, unused_ports, wait_ready

AGREEMENT_PHOTOS = 8


@dataclass
class System:
    """A server under test: how to reach it and which processes it is made of."""

    name: str
    target: Target | TorchServeTarget
    pids: list[int] = field(default_factory=list)

    def rss_mb(self) -> float:
        total = 0
        for pid in self.pids:
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return round(total / 2**20, 1)


def wait_listening(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(0.3)
    raise TimeoutError(f"nothing listens at {url} after {timeout} s")


@contextmanager
def background(command: list[str], url: str, env: dict[str, str] | None = None):
    """A server process, started and waited for; terminated on exit."""
    process = subprocess.Popen(
        command,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(url, process)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def load_plan(long: bool) -> list[tuple[str, int, int]]:
    """(photo, concurrency, requests): enough requests for stable percentiles, few minutes."""
    scale = 4 if long else 1
    plan = []
    for concurrency in (1, 4, 16):
        plan.append(("500x375", concurrency, scale * max(32, 8 * concurrency)))
    for concurrency in (1, 4, 16):
        plan.append(("4000x3000", concurrency, scale * max(8, 2 * concurrency)))
    return plan


def mask_of(answer: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(json.loads(answer)["mask_png"]))))


def agreement(system: System, photos: list[bytes], reference: list[np.ndarray]) -> float:
    """Fraction of pixels whose served class equals the fp32 eager class."""
    equal = total = 0
    with requests.Session() as session:
        for data, expected in zip(photos, reference, strict=True):
            served = mask_of(system.target.send(session, data).content)
            equal += int((served == expected).sum())
            total += expected.size
    return equal / total


def handler_timings(system: System, data: bytes, calls: int = 30) -> dict[str, float]:
    """Median per-stage times the handler reports, one request at a time (medians: a stray
    scheduler delay on 2 shared cores should not decide the figure)."""
    stages: dict[str, list[float]] = {}
    with requests.Session() as session:
        for _ in range(calls):
            started = time.perf_counter()
            answer = system.target.send(session, data).json()
            stages.setdefault("request", []).append((time.perf_counter() - started) * 1000)
            for stage, ms in answer["timings_ms"].items():
                stages.setdefault(stage, []).append(ms)
    return {stage: round(float(np.median(v)), 2) for stage, v in stages.items()}


def run_loads(system: System, photos: dict[str, bytes], plan) -> list[dict]:
    rows = []
    for photo, concurrency, total in plan:
        result = measure(system.target, photos[photo], total, concurrency)
        rows.append(
            {
                "system": system.name,
                "photo": photo,
                "concurrency": concurrency,
                **result.summary(),
                "server_rss_mb": system.rss_mb(),
            }
        )
        print(report.load_line(rows[-1]), flush=True)
    return rows


@dataclass
class Workload:
    """What every server is measured with, and the fp32 eager masks its answers must match."""

    photos: dict[str, bytes]
    plan: list[tuple[str, int, int]]
    checks: list[bytes]
    reference: list[np.ndarray]


def measure_system(system: System, work: Workload, results: dict) -> None:
    results["loads"] += run_loads(system, work.photos, work.plan)
    results["mask_agreement_vs_fp32_eager"][system.name] = round(
        agreement(system, work.checks, work.reference), 5
    )


def measure_naive(export_dir: Path, device: str, work: Workload, results: dict) -> None:
    port = free_ports(1)[0]
    command = [
        sys.executable,
        "-m",
        "bench.naive_baseline",
        "--device",
        device,
        "--export-dir",
        str(export_dir),
        "--port",
        str(port),
    ]
    with background(command, f"http://127.0.0.1:{port}/") as process:
        url = f"http://127.0.0.1:{port}/"
        measure_system(System("naive server (baseline)", Target(url), [process.pid]), work, results)


def measure_torchserve(export_dir: Path, tmp: Path, work: Workload, results: dict) -> None:
    """The shipped configuration: TorchServe directly, then the proxy in front of it."""
    store = tmp / "store"
    build_archive(export_dir, store)
    instance = Instance(tmp / "ts", store, unused_ports())
    process = start(instance)
    try:
        wait_ready(instance, process, timeout=300)
        target = TorchServeTarget(
            instance.url("inference"), instance.url("management"), instance.key_file
        )
        pids = [w["pid"] for w in instance.client().workers()]
        direct = System("TorchServe direct", target, pids)
        results["handler_timings_ms_500x375"] = handler_timings(direct, work.photos["500x375"])
        measure_system(direct, work, results)

        port, metrics_port = free_ports(2)
        # measured as deployed: metrics collected, their listener open
        env = web_environment(instance, METRICS_ADDRESS=f"127.0.0.1:{metrics_port}")
        health = f"http://127.0.0.1:{port}/api/health"
        with background(external_command(port), health, env) as proxy:
            target = Target(f"http://127.0.0.1:{port}/api/segment", file_field="file")
            measure_system(
                System("through the proxy", target, [*direct.pids, proxy.pid]), work, results
            )
    finally:
        stop(instance, process)


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
    settings = yaml.safe_load(MODEL_CONFIG.read_text())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    naive = NaiveSegmenter(args.export_dir, device)
    size = naive.spec.input_size
    limits = measure_model(naive, device, settings["batchSize"], args.long)
    checks = [pet_photo(*SIZES["500x375"], seed=seed) for seed in range(1, 1 + AGREEMENT_PHOTOS)]
    work = Workload(
        photos={name: pet_photo(*wh) for name, wh in SIZES.items()},
        plan=load_plan(args.long),
        checks=checks,
        reference=[naive.labels(data)[1] for data in checks],
    )
    del naive
    serving = {k: settings[k] for k in ("minWorkers", "batchSize", "maxBatchDelay", "handler")}
    results = {
        "machine": report.machine(),
        "model": {
            "device": device,
            "export_dir": str(args.export_dir),
            "input_size": size,
            "serving": serving,
        },
        "limits": limits,
        "loads": [],
        "mask_agreement_vs_fp32_eager": {},
    }
    measure_naive(args.export_dir, device, work, results)
    with tempfile.TemporaryDirectory() as tmp:
        measure_torchserve(args.export_dir, Path(tmp), work, results)
    results["seconds"] = round(time.monotonic() - started, 1)
    results["targets"] = report.targets(results)
    save(results, args.out)
    return 0


def measure_model(naive: NaiveSegmenter, device: str, batch: int, long: bool) -> list[dict]:
    """The limit rows: the bare model in this process, every core, batch 1 and ``batch``."""
    size = naive.spec.input_size
    torch.set_num_threads(os.cpu_count() or 1)
    print(
        f"limit: the bare model at {size}x{size} on {device}, "
        f"{torch.get_num_threads()} CPU threads",
        flush=True,
    )
    limits = measure_limits(naive.model, size, [1, batch], 12 if long else 4)
    for row in limits:
        print(report.limit_line(row), flush=True)
    return limits


def save(results: dict, out: Path) -> None:
    """bench.json and bench.png, and the table on stdout."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    report.chart(results, out / "bench.png")
    print("\n" + "\n".join(report.table(results)))
    print(f"\nsaved {out / 'bench.json'} and {out / 'bench.png'} ({results['seconds']:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
