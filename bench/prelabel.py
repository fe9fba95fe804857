"""Pre-labelling in Label Studio against the bulk client, on the same photos and TorchServe:
what the labelling loop (docs/labelling.md) costs per photo over `petseg predict`.

The photos are imported into a real Label Studio (bench/label_studio.py) with petseg's brush
config, `petseg label-studio serve` is the project's ML backend, and the row times the Data
Manager's "Retrieve Predictions" over every task, as an annotator would start it: Label Studio
sends the tasks in one batch, the backend fetches each photo back from Label Studio, has it
segmented (8 in flight), encodes brush RLE, and Label Studio stores the predictions. The bulk
client's figure is its own report's, at its default concurrency, writing the masks.

`make bench` runs it once for the demo model; alone, several times for a range:

    python -m bench.prelabel [--export-dir exported/petseg] [--runs 3] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import label_studio, report
from bench.inputs import pet_photo
from petseg.packaging.archive import build_archive
from petseg.serving.launcher import ROOT, Instance, serve_archive, stop, unused_ports

PHOTOS = 48
SIZE = (500, 375)


def measure(instance: Instance, folder: Path) -> dict:
    """images/s of both ways over the same PHOTOS distinct photos, and how many predictions
    Label Studio holds afterwards (each photo's one)."""
    photos = folder / "photos"
    photos.mkdir(parents=True)
    paths = [photos / f"pet{index:03}.jpg" for index in range(PHOTOS)]
    for index, path in enumerate(paths):
        path.write_bytes(pet_photo(*SIZE, seed=100 + index))
    petseg = [sys.executable, "-m", "petseg", "--workdir", str(instance.workdir)]
    predict = [*petseg, "predict", str(photos), "--out-dir", str(folder / "masks")]
    subprocess.run(predict, cwd=ROOT, capture_output=True, text=True, check=True)
    bulk = json.loads((folder / "masks" / "report.json").read_text())

    config = subprocess.run(
        [*petseg, "label-studio", "config"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    with (
        label_studio.running(folder / "studio", folder / "label-studio.log") as studio,
        label_studio.backend(instance.workdir, studio, folder / "backend.log") as backend,
    ):
        project = studio.project("bench", config)
        tasks = studio.import_photos(project, paths)
        studio.connect(project, backend)
        started = time.perf_counter()
        studio.retrieve_predictions(project)
        seconds = time.perf_counter() - started
        predicted = sum(1 for task in tasks if studio.predictions(task))
    return {
        "photo": f"{SIZE[0]}x{SIZE[1]}",
        "photos": PHOTOS,
        "predict_images_per_s": bulk["images_per_s"],
        "label_studio_images_per_s": round(PHOTOS / seconds, 2),
        "predicted": predicted,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the pre-labelling row alone, several times")
    parser.add_argument("--export-dir", type=Path, default=ROOT / "exported" / "petseg")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        build_archive(args.export_dir, Path(tmp) / "store")
        instance = Instance(Path(tmp) / "ts", Path(tmp) / "store", unused_ports())
        process = serve_archive(instance, timeout=300, every_worker=True)
        try:
            for run in range(args.runs):
                rows.append(measure(instance, Path(tmp) / f"run-{run}"))
                print(report.prelabel_line(rows[-1]), flush=True)
        finally:
            stop(instance, process)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"machine": report.machine(), "export_dir": str(args.export_dir), "runs": rows}
    (args.out / "prelabel.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
