"""Compare TorchServe worker/thread/batch settings for petseg on this machine.

    python -m bench.tune_serving --export-dir exported/petseg [--requests 120 --concurrency 8]

For each candidate it builds an archive whose model-config.yaml differs only in those settings,
registers it on one TorchServe, drives it with 500x375 JPEGs from a separate client process and
prints images/s and latency percentiles. The winner goes into config/model-config.yaml.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
from pathlib import Path

import yaml

from bench.loadgen import run_load
from handler.archive import MODEL_CONFIG, build_archive
from handler.server import Instance, Ports, request, start, stop, wait_ready
from tests import images

CANDIDATES = [
    {"workers": 1, "threads": 2, "batchSize": 1, "maxBatchDelay": 0},
    {"workers": 1, "threads": 2, "batchSize": 4, "maxBatchDelay": 20},
    {"workers": 2, "threads": 1, "batchSize": 1, "maxBatchDelay": 0},
    {"workers": 2, "threads": 1, "batchSize": 4, "maxBatchDelay": 20},
    {"workers": 2, "threads": 2, "batchSize": 1, "maxBatchDelay": 0},
]


def variant_config(candidate: dict, folder: Path) -> Path:
    config = yaml.safe_load(MODEL_CONFIG.read_text())
    config.update(
        minWorkers=candidate["workers"],
        maxWorkers=candidate["workers"],
        batchSize=candidate["batchSize"],
        maxBatchDelay=candidate["maxBatchDelay"],
    )
    config["handler"]["threads"] = candidate["threads"]
    path = folder / "model-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def drive(instance: Instance, total: int, concurrency: int, queue) -> None:
    """Client process: POST JPEGs and report the load summary."""
    body = images.jpeg(500, 375)
    url = instance.url("inference", "/predictions/petseg")
    headers = {
        "Authorization": f"Bearer {instance.keys()['inference']}",
        "Content-Type": "image/jpeg",
    }

    def send(session, _):
        return session.post(url, data=body, headers=headers, timeout=120).status_code

    queue.put(run_load(send, total, concurrency).summary())


def measure(instance: Instance, total: int, concurrency: int) -> dict:
    queue = multiprocessing.get_context("spawn").Queue()
    client = multiprocessing.get_context("spawn").Process(
        target=drive, args=(instance, total, concurrency, queue)
    )
    client.start()
    result = queue.get()
    client.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export-dir", type=Path, default=Path("exported/petseg"))
    parser.add_argument("--requests", type=int, default=120)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        instance = Instance(
            Path(tmp) / "ts", store, Ports(18180, 18181, 18182, 18183, 18184, 18185)
        )
        build_archive(args.export_dir, store, name="petseg")
        process = start(instance)
        try:
            wait_ready(instance, process)
            keys = instance.keys()
            request(instance.url("management", "/models/petseg"), keys["management"], "DELETE")
            for n, candidate in enumerate(CANDIDATES):
                name = f"petseg-c{n}"
                build_archive(
                    args.export_dir, store, name=name, config=variant_config(candidate, Path(tmp))
                )
                url = instance.url(
                    "management",
                    f"/models?url={name}.mar&model_name=petseg"
                    f"&initial_workers={candidate['workers']}&synchronous=true",
                )
                status, body = request(url, keys["management"], "POST", timeout=300)
                assert status == 200, body
                wait_ready(instance, process)
                result = measure(instance, args.requests, args.concurrency)
                print(json.dumps({**candidate, **result}), flush=True)
                request(
                    instance.url("management", "/models/petseg"),
                    keys["management"],
                    "DELETE",
                    timeout=120,
                )
        finally:
            stop(instance, process)


if __name__ == "__main__":
    main()
