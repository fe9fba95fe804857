"""Fixtures shared by every folder, and markers that say what each test needs.

Folders: ``unit/`` runs in-process on generated data; ``model/`` trains a tiny model first;
``integration/`` starts a real TorchServe (and the web app under waitress); ``system/`` drives
the whole stack from outside: a real browser, faults, floods. Markers follow the folder, so
``pytest -m "not slow"`` is the fast half and ``pytest -m system`` the browser and fault tests.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import label_studio
from model_training.synth import generate
from petseg.serving.launcher import Instance, serve_archive, stop, unused_ports
from tests.container.support import MEASURED, start_warming
from tests.support import traffic
from tests.support.beforehand import in_background
from tests.support.stack import Web, name_ports, running_web
from tests.support.training import tiny_train_args, write_kaggle_layout

with warnings.catch_warnings():
    # TorchServe 0.12 reads its version.txt without closing it, at import.
    warnings.simplefilter("ignore", ResourceWarning)
    import ts.version  # noqa: F401

FOLDER_MARKERS = {
    "system": ("slow", "system"),
    "integration": ("slow", "integration"),
    "model": ("slow",),
    "unit": (),
    "container": ("slow", "container"),
}
"""Each folder's markers, in the order the folders run: the longest modules first, so that on
several processes the short ones fill in at the end instead of one long module running alone;
the images' tests last, their layers built in the background meanwhile (missing podman: the
tests say so)."""
RUN_ORDER = tuple(FOLDER_MARKERS)
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
"""This process's name ("gw0", "gw1"...) when the suite runs on several (`make test`:
pytest-xdist, one test module at a time per process); None in a plain pytest run."""


def pytest_configure(config: pytest.Config) -> None:
    traffic.record()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by its folder (a test anywhere that needs the trained model is slow), put
    the folders in ``RUN_ORDER``, and start what late tests need in the background
    (tests/support/beforehand.py)."""
    for item in items:
        folder = Path(item.path).parent.name
        if folder not in FOLDER_MARKERS:
            raise pytest.UsageError(f"{item.path}: tests live in one of {sorted(FOLDER_MARKERS)}")
        for name in FOLDER_MARKERS[folder]:
            item.add_marker(name)
        if "tiny_export" in getattr(item, "fixturenames", ()):
            item.add_marker("slow")
    items.sort(key=lambda item: RUN_ORDER.index(Path(item.path).parent.name))
    if WORKER not in (None, "gw0"):  # one warm-up a run
        return
    if shutil.which("podman") and any(item.get_closest_marker("container") for item in items):
        start_warming()
    if any("studio" in getattr(item, "fixturenames", ()) for item in items):
        in_background("installing-label-studio", label_studio.installed)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On several processes, each worker's figures go to the controller, which prints them."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["traffic"] = traffic.counted()
        output["containers"] = dict(MEASURED)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """pytest-xdist's: a worker is done, with its figures."""
    traffic.add(node.workeroutput.get("traffic", []))
    MEASURED.update(node.workeroutput.get("containers", {}))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    for line in traffic.table():
        terminalreporter.write_line(line)
    if MEASURED:
        summary = ", ".join(f"{what} {value}" for what, value in MEASURED.items())
        terminalreporter.write_line(f"containers: {summary}")


@pytest.fixture(scope="session")
def oxford_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40-image synthetic dataset in the Oxford-IIIT Pet layout (read-only: copy to mutate)."""
    root = tmp_path_factory.mktemp("oxford")
    generate(root, n=40, seed=1, test_fraction=0.2, jobs=1)
    return root


@pytest.fixture(scope="session")
def kaggle_dir(oxford_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_kaggle_layout(oxford_dir, tmp_path_factory.mktemp("kaggle") / "pets")


@pytest.fixture
def oxford_copy(oxford_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the Oxford fixture that a test may break."""
    return Path(shutil.copytree(oxford_dir, tmp_path / "oxford"))


@pytest.fixture(scope="session")
def tiny_export(oxford_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A really trained (if briefly) 64-px model, exported: what the serving tests load."""
    from model_training import export, train

    run = tmp_path_factory.mktemp("tiny-run")
    train.main(tiny_train_args(oxford_dir, run, "--epochs", "2"))
    out = tmp_path_factory.mktemp("export") / "petseg"
    export.export(run / "best.pt", out, version="1.0")
    return out


@pytest.fixture(scope="session")
def model_store(tiny_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from petseg.packaging.archive import build_archive

    store = tmp_path_factory.mktemp("model_store")
    build_archive(tiny_export, store)
    return store


@pytest.fixture(scope="session")
def server(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    """A real TorchServe on free ports serving the tiny model, for the whole session."""
    instance = Instance(tmp_path_factory.mktemp("torchserve"), model_store, unused_ports())
    name_ports(instance)
    process = serve_archive(instance, timeout=240)
    try:
        yield instance
    finally:
        stop(instance, process)


@pytest.fixture(scope="session")
def web(server: Instance) -> Iterator[Web]:
    """The web app in front of the session's TorchServe: public and operators' URLs."""
    with running_web(server) as running:
        yield running


@pytest.fixture(scope="session")
def proxy(web: Web) -> str:
    """The proxy's base URL."""
    return web.url
