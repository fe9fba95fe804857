"""The served rows of `make bench`: each server started alone, loaded and probed, then stopped.

The naive server (bench/naive_baseline.py), then the shipped configuration: TorchServe directly
and the proxy in front of it. Each is loaded by a client in its own process (bench/loadgen.py);
TorchServe also gets its workers' memory, the handler's stage times, the bulk client's rows, and
through the proxy what the proxy adds and what a shadow rollout costs. The rows are printed as
bench/report.py writes them and kept in the model's results.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from bench import prelabel, report
from bench.agreement import agreement
from bench.loadgen import Connection, Target, measure
from bench.under_test import Model, System, Workload, rss_mb
from petseg.packaging.archive import build_archive
from petseg.serving import state
from petseg.serving.demo import external_command, web_environment
from petseg.serving.launcher import (
    DEFAULT_ARCHIVE,
    ROOT,
    Instance,
    free_ports,
    serve_archive,
    stop,
    unused_ports,
    wait_answering,
)
from petseg.serving.reconcile import apply_state
from torchserve_client import TorchServe
from torchserve_client.rollout import Rollout

BURST = (48, 16)
"""The memory check: this many 12 MP photos at this many concurrent clients."""
BULK_CONCURRENCY = 16
"""`petseg predict` on a folder is measured at this many threads, beside the same load row."""
JIT_WARMUP = (1500, 16)
"""Requests (500x375, clients) TorchServe gets before it is measured: its Java frontend spent
3.8 ms of CPU per request in the first 500 and 1.2 ms after ~1,500 (JIT compilation), and a
server in production runs warm."""
SHADOW_PERCENT = 20
SHADOW_VERSION = "shadow"


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
        wait_answering(url, process, " ".join(command), timeout=120)  # the naive one: no /health
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def handler_timings(system: System, data: bytes, calls: int) -> dict[str, float]:
    """Median per-stage times the handler reports, one request at a time (medians: a stray
    scheduler delay on shared cores should not decide the figure)."""
    stages: dict[str, list[float]] = {}
    request = system.target.request(data)
    with Connection(system.target) as connection:
        for _ in range(calls):
            started = time.perf_counter()
            answer = json.loads(connection.send(request)[1])
            stages.setdefault("request", []).append((time.perf_counter() - started) * 1000)
            for stage, ms in answer["timings_ms"].items():
                stages.setdefault(stage, []).append(ms)
    return {stage: round(statistics.median(v), 2) for stage, v in stages.items()}


def measure_system(system: System, model: Model, work: Workload) -> None:
    for photo, concurrency, total in work.plan:
        result = measure(system.target, work.photos[photo], total, concurrency)
        row = {
            "system": system.name,
            "photo": photo,
            "concurrency": concurrency,
            **result.summary(),
            "server_rss_mb": system.rss_mb(),
        }
        model.results["loads"].append(row)
        print(report.load_line(row), flush=True)
    if model.trained:
        model.results["mask_agreement_vs_fp32_eager"][system.name] = {
            photo: agreement(system, checks, work.reference[photo])
            for photo, checks in work.checks.items()
        }


def proxy_added_ms(direct: System, proxy: System, data: bytes, pairs: int) -> dict:
    """What the proxy adds to one request: direct and proxied requests one at a time, in pairs,
    and the median of the pairs' differences. Two separate runs of TorchServe at one client
    differ by more than the proxy's cost (its p50 moved by 5 ms between runs here). Half the
    pairs send the proxied request first: the second request of a pair is ~0.7 ms faster
    (two direct ones: -0.6 to -0.8 ms at 256 px), which one fixed order counts as the proxy's."""
    differences = []
    direct_request, proxy_request = direct.target.request(data), proxy.target.request(data)
    with Connection(direct.target) as to_direct, Connection(proxy.target) as to_proxy:
        for pair in range(pairs + 2):  # the first two pairs warm both paths up
            took = {}
            order = [(to_direct, direct_request), (to_proxy, proxy_request)]
            for connection, request in order[:: 1 if pair % 2 else -1]:
                started = time.perf_counter()
                connection.send(request)
                took[connection] = time.perf_counter() - started
            differences.append(took[to_proxy] - took[to_direct])
    differences = sorted(d * 1000 for d in differences[2:])
    quartile = len(differences) // 4
    return {
        "median": round(statistics.median(differences), 2),
        "q1": round(differences[quartile], 2),
        "q3": round(differences[-1 - quartile], 2),
        "pairs": pairs,
    }


def measure_naive(model: Model, device: str, work: Workload) -> None:
    port = free_ports(1)[0]
    command = [sys.executable, "-m", "bench.naive_baseline", "--device", device]
    command += ["--export-dir", str(model.export_dir), "--port", str(port)]
    url = f"http://127.0.0.1:{port}/"
    with background(command, url) as process:
        measure_system(System(report.NAIVE, Target(url), [process.pid]), model, work)


def worker_memory(client: TorchServe, target: Target, photo: bytes) -> list[dict]:
    """Each worker's RSS idle, at the end of a burst of 12 MP photos, and 2 s later."""
    pids = [w["pid"] for w in client.workers()]
    idle = {pid: rss_mb(pid) for pid in pids}
    total, concurrency = BURST
    measure(target, photo, total, concurrency)
    peak = {pid: rss_mb(pid) for pid in pids}
    time.sleep(2)
    return [
        {
            "pid": pid,
            "idle_mb": round(idle[pid]),
            "after_burst_mb": round(peak[pid]),
            "settled_mb": round(rss_mb(pid)),
        }
        for pid in pids
    ]


def bulk_row(
    instance: Instance, photo: bytes, total: int, runs: str, concurrency: int, folder: Path
) -> dict:
    """`petseg predict` over a folder of ``total`` copies of ``photo``, as ``runs`` says
    (report.BULK_RUNS), in a process of its own like the load generator. Its images/s are its
    report's: from the first photo sent to the last answer, without its start-up."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "photos").mkdir(parents=True)
    for index in range(total):
        (folder / "photos" / f"{index:05}.jpg").write_bytes(photo)
    out = folder / "out"
    command = [sys.executable, "-m", "petseg", "--workdir", str(instance.workdir), "predict"]
    command += [str(folder / "photos"), "--out-dir", str(out), "--concurrency", str(concurrency)]
    command += report.BULK_RUNS[runs]
    if "--coco" in command:  # the last option: its file follows
        command.append(str(out / "coco.json"))
    ran = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if ran.returncode not in (0, 1):  # 1: some photos failed, which the row counts
        raise RuntimeError(f"petseg predict exited with {ran.returncode}: {ran.stderr[-500:]}")
    done = json.loads((out / "report.json").read_text())
    return {
        "runs": runs,
        "photos": total,
        "concurrency": concurrency,
        "images_per_s": done["images_per_s"],
        "failed": done["failed"],
    }


def measure_bulk(instance: Instance, model: Model, work: Workload, folder: Path) -> None:
    """The bulk client at the load generator's highest concurrency, on the same photos."""
    model.results["bulk"] = {}
    for photo, concurrency, total in work.plan:
        if concurrency == BULK_CONCURRENCY:
            rows = model.results["bulk"][photo] = []
            for runs in report.BULK_RUNS:
                rows.append(
                    bulk_row(instance, work.photos[photo], total, runs, concurrency, folder)
                )
                print(report.bulk_line(model.results, photo, rows[-1]), flush=True)


def measure_torchserve(model: Model, tmp: Path, work: Workload) -> None:
    """The shipped configuration: TorchServe directly, then the proxy in front of it."""
    store = tmp / "store"
    build_archive(model.export_dir, store)
    instance = Instance(tmp / "ts", store, unused_ports())
    process = serve_archive(instance, timeout=300, every_worker=True)
    try:
        client = instance.client()
        target = Target.torchserve(instance.url("inference"), instance.key_file)
        direct = System(report.DIRECT, target, [w["pid"] for w in client.workers()])
        measure(target, work.photos["500x375"], *JIT_WARMUP)
        model.results["worker_memory"] = worker_memory(client, target, work.photos["4000x3000"])
        print(report.memory_line(model.results["worker_memory"]), flush=True)
        model.results["handler_timings_ms"] = {
            photo: handler_timings(direct, data, 30 if photo == "500x375" else 12)
            for photo, data in work.photos.items()
        }
        measure_system(direct, model, work)
        measure_bulk(instance, model, work, tmp / "bulk")
        if model.trained:  # its masks are worth correcting: what annotators would start from
            model.results["prelabel"] = prelabel.measure(instance, tmp / "prelabel")
            print(f"  {report.prelabel_line(model.results['prelabel'])}", flush=True)

        port, metrics_port = free_ports(2)
        # measured as deployed: metrics collected, their listener open
        env = web_environment(instance, METRICS_ADDRESS=f"127.0.0.1:{metrics_port}")
        health = f"http://127.0.0.1:{port}/api/health"
        with background(external_command(port), health, env) as proxy:
            target = Target(f"http://127.0.0.1:{port}/api/segment", file_field="file")
            system = System(report.PROXY, target, [*direct.pids, proxy.pid])
            measure_system(system, model, work)
            model.results["proxy_added_ms"] = {
                photo: proxy_added_ms(direct, system, data, 100 if photo == "500x375" else 20)
                for photo, data in work.photos.items()
            }
            print(report.proxy_added_line(model.results["proxy_added_ms"]), flush=True)
            model.results["shadow_cost"] = shadow_cost(
                instance, target, work.photos["500x375"], model.export_dir
            )
            print(f"  {report.shadow_line(model.results['shadow_cost'])}", flush=True)
    finally:
        stop(instance, process)


def shadow_cost(instance: Instance, target: Target, photo: bytes, export_dir: Path) -> dict:
    """Through the proxy, c=1 p50 and c=16 throughput of the default version with a shadow
    rollout of SHADOW_PERCENT% running and without: the candidate (the same model, one worker)
    is registered both times, so only the shadow's own work differs."""
    build_archive(export_dir, instance.model_store, name="petseg-shadow", version=SHADOW_VERSION)
    client = instance.client()
    default = client.default_version()
    versions = {
        default: state.VersionSpec(DEFAULT_ARCHIVE),
        SHADOW_VERSION: state.VersionSpec("petseg-shadow.mar", workers=1),
    }
    trial = Rollout(SHADOW_VERSION, "shadow", SHADOW_PERCENT, min_requests=10**9)
    state_file = instance.workdir / "bench-serving.json"
    figures = {}
    for label, rollout in (("none", None), ("shadow", trial)):
        state.save(state.ServingState(default, versions, rollout), state_file)
        apply_state(client, state_file, instance.model_store, instance.workdir, durable=True)
        one, sixteen = measure(target, photo, 100, 1), measure(target, photo, 320, 16)
        figures[label] = {
            "c1_p50_ms": one.summary()["p50_ms"],
            "c16_images_per_s": sixteen.summary()["images_per_s"],
        }
    return {"percent": SHADOW_PERCENT, **figures}
