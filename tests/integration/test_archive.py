"""The .mar is the handler package, whole, and nothing else of the repository; it serves from a
TorchServe that has no path to the repository."""

from __future__ import annotations

import zipfile
from pathlib import Path

from petseg.serving.launcher import ROOT, Instance

PACKAGE = ROOT / "handler"
OTHER_PACKAGES = ("petseg", "torchserve_client", "frontend_server", "model_training", "bench")


def archive_files(store: Path) -> set[str]:
    with zipfile.ZipFile(store / "petseg.mar") as mar:
        return {name for name in mar.namelist() if not name.endswith("/")}


def package_files() -> set[str]:
    return {
        f"handler/{path.relative_to(PACKAGE)}"
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_the_archive_holds_the_handler_package_and_the_model(model_store):
    files = archive_files(model_store)
    shipped = {name for name in files if name.startswith("handler/")}
    assert shipped == package_files()
    assert files - shipped == {
        "MAR-INF/MANIFEST.json",
        "petseg_handler.py",  # the entry module, which TorchServe imports from the top level
        "weights.pt",
        "model_spec.json",
        "model-config.yaml",
        "requirements.txt",
    }
    assert not [name for name in files if name.split("/")[0] in OTHER_PACKAGES]
    with zipfile.ZipFile(model_store / "petseg.mar") as mar:
        for name in shipped:
            assert mar.read(name) == (ROOT / name).read_bytes(), name


def worker_environment(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(e.decode().split("=", 1) for e in entries if b"=" in e)


def test_workers_run_the_archive_s_code_not_the_checkout(server: Instance):
    for worker in server.client().workers():
        env = worker_environment(worker["pid"])
        paths = [Path(p).resolve() for p in env.get("PYTHONPATH", "").split(":") if p]
        assert ROOT not in paths, paths
    log = (server.workdir / "logs" / "model_log.log").read_text()
    origins = [
        line.split("code from ")[1].strip() for line in log.splitlines() if "code from" in line
    ]
    assert origins, "the handler did not log where its code came from"
    assert all(not Path(origin).resolve().is_relative_to(ROOT) for origin in origins), origins
