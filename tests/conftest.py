"""Shared fixtures: tiny datasets in both published layouts, generated on the fly."""

from __future__ import annotations

import argparse
import contextlib
import csv
import shutil
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image

from model_training.datasets import labels_from_trimap, oxford_samples
from model_training.synth import generate
from tests import traffic

with warnings.catch_warnings():
    # TorchServe 0.12 reads its version.txt without closing it, at import.
    warnings.simplefilter("ignore", ResourceWarning)
    import ts.version  # noqa: F401


def pytest_configure(config: pytest.Config) -> None:
    requests.Session.send = traffic.record(requests.Session.send)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    for line in traffic.table():
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def oxford_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40-image synthetic dataset in the Oxford-IIIT Pet layout (read-only: copy to mutate)."""
    root = tmp_path_factory.mktemp("oxford")
    generate(root, n=40, seed=1, test_fraction=0.2, jobs=1)
    return root


def write_kaggle_layout(oxford: Path, root: Path) -> Path:
    """The same images in the Kaggle layout: class-id masks and train/val/test CSVs."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    train = oxford_samples(oxford, "train", 0.2, 0)
    splits = {
        "train": train,
        "val": oxford_samples(oxford, "val", 0.2, 0),
        "test": oxford_samples(oxford, "test", 0.2, 0),
    }
    for split, samples in splits.items():
        with (root / f"{split}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["Image", "Species"])
            for s in samples:
                writer.writerow([s.name, s.species])
                shutil.copy(s.image, root / "images" / s.image.name)
                trimap = np.asarray(Image.open(s.mask))
                labels = labels_from_trimap(trimap, s.species, "multiclass", "ignore")
                Image.fromarray(labels).save(root / "masks" / f"{s.name}.png")
    return root


@pytest.fixture(scope="session")
def kaggle_dir(oxford_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_kaggle_layout(oxford_dir, tmp_path_factory.mktemp("kaggle") / "pets")


@pytest.fixture
def oxford_copy(oxford_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the Oxford fixture that a test may break."""
    return Path(shutil.copytree(oxford_dir, tmp_path / "oxford"))


def tiny_train_args(data: Path, out: Path, *extra: str) -> argparse.Namespace:
    """A training run small enough for tests: 16 images at 64 px, no loader processes."""
    from model_training import train

    return train.get_args_parser().parse_args(
        ["--data", str(data), "--out", str(out), "--input-size", "64", "--batch-size", "8",
         "--limit", "16", "--workers", "0", "--lr", "1e-3", *extra]
    )  # fmt: skip


@pytest.fixture(scope="session")
def tiny_export(oxford_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A really trained (if briefly) 64-px model, exported: what the serving tests load."""
    from model_training import export, train

    run = tmp_path_factory.mktemp("tiny-run")
    args = tiny_train_args(oxford_dir, run, "--epochs", "2")
    train.main(args)
    out = tmp_path_factory.mktemp("export") / "petseg"
    export.export(run / "best.pt", out, version="1.0")
    return out


@pytest.fixture(scope="session")
def model_store(tiny_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from handler.archive import build_archive

    store = tmp_path_factory.mktemp("model_store")
    build_archive(tiny_export, store)
    return store


@pytest.fixture(scope="session")
def server(model_store: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real TorchServe on free ports serving the tiny model, for the whole session."""
    from handler.server import Instance, Ports, start, stop, wait_ready

    instance = Instance(tmp_path_factory.mktemp("torchserve"), model_store, Ports.free())
    name_ports(instance)
    process = start(instance)
    try:
        wait_ready(instance, process, timeout=240)
        yield instance
    finally:
        stop(instance, process)


def name_ports(instance) -> None:
    """Tell the request counter which ports are this TorchServe's APIs."""
    for api in ("inference", "management", "metrics"):
        traffic.name_port(getattr(instance.ports, api), f"TorchServe {api}")


@contextlib.contextmanager
def running_proxy(instance, threads: int = 16, **config: Any) -> Iterator[str]:
    """The web app, served by its production server in a thread, in front of ``instance``."""
    from frontend_server import create_app
    from frontend_server.serving import make_server

    app = create_app(
        {
            "TORCHSERVE_INFERENCE_URL": instance.url("inference"),
            "TORCHSERVE_MANAGEMENT_URL": instance.url("management"),
            "KEY_FILE": str(instance.key_file),
            **config,
        }
    )
    web = make_server(app, "127.0.0.1", 0, threads)
    port = int(web.effective_port)  # waitress reports it as a str
    traffic.name_port(port, "proxy")
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        web.close()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def proxy(server) -> Iterator[str]:
    """The proxy's base URL, in front of the session's TorchServe."""
    with running_proxy(server) as url:
        yield url
