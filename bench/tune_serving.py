"""Compare TorchServe worker/thread/batch settings for petseg on this machine.

    python -m bench.tune_serving --export-dir exported/petseg [--requests 160 --concurrency 1 16]

For each candidate it builds an archive whose model-config.yaml differs only in those settings,
registers it on one TorchServe, drives it with 500x375 JPEGs from a separate client process and
prints images/s and latency percentiles. The winner goes into config/model-config.yaml.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import yaml

from bench.inputs import pet_photo
from bench.loadgen import Target, measure
from petseg.packaging.archive import MODEL_CONFIG, build_archive
from petseg.serving.launcher import Instance, serve_archive, stop, unused_ports, wait_ready

CANDIDATES = [
    # threads 0: the handler's plan (a worker's share of the cores, all of them for a lone request)
    {"workers": 2, "threads": 0, "batchSize": 8, "maxBatchDelay": 5},
    {"workers": 2, "threads": 0, "batchSize": 8, "maxBatchDelay": 1},
    {"workers": 2, "threads": 0, "batchSize": 4, "maxBatchDelay": 5},
    {"workers": 2, "threads": 0, "batchSize": 4, "maxBatchDelay": 1},
    {"workers": 2, "threads": 0, "batchSize": 6, "maxBatchDelay": 2},
]


def variant_config(candidate: dict, folder: Path) -> Path:
    config = yaml.safe_load(MODEL_CONFIG.read_text())
    # the workers go with the registration: an archive naming minWorkers would override it
    config.update(batchSize=candidate["batchSize"], maxBatchDelay=candidate["maxBatchDelay"])
    config["handler"]["threads"] = candidate["threads"]
    path = folder / "model-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def measure_candidate(instance: Instance, total: int, concurrency: int) -> dict:
    target = Target.torchserve(instance.url("inference"), instance.key_file)
    return measure(target, pet_photo(500, 375), total, concurrency).summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export-dir", type=Path, default=Path("exported/petseg"))
    parser.add_argument("--requests", type=int, default=160)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 16])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        instance = Instance(Path(tmp) / "ts", store, unused_ports())
        archive = build_archive(args.export_dir, store)
        process = serve_archive(instance)
        try:
            client = instance.client()
            for candidate in CANDIDATES:
                # the same model name each time, so the load reaches the candidate
                client.unregister()
                build_archive(args.export_dir, store, config=variant_config(candidate, Path(tmp)))
                client.register(archive.name, candidate["workers"])
                wait_ready(instance, process, every_worker=True)
                for concurrency in args.concurrency:
                    result = measure_candidate(instance, args.requests, concurrency)
                    print(
                        json.dumps({**candidate, "concurrency": concurrency, **result}), flush=True
                    )
        finally:
            stop(instance, process)


if __name__ == "__main__":
    main()
