"""Build the .mar: exported weights + model_spec.json + the handler package + model-config.yaml.

The archive carries the ``handler`` package whole, the model code it needs included, and
nothing else from this repository: any TorchServe with handler/requirements.txt installed can
serve it. TorchServe imports the entry module (handler/petseg_handler.py) from the archive's
top level, so torch-model-archiver puts a copy of it there too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from handler.protocol import MODEL_NAME
from handler.spec import SPEC_FILENAME, ModelSpec
from petseg import ROOT
from petseg.serving.state import ServingState

PACKAGE = ROOT / "handler"
HANDLER_ENTRY = PACKAGE / "petseg_handler.py"
REQUIREMENTS = PACKAGE / "requirements.txt"
MODEL_CONFIG = ROOT / "config" / "model-config.yaml"
NOT_SHIPPED = shutil.ignore_patterns("__pycache__", "*.pyc")
"""Byte code is the interpreter's cache, not a part of the package."""


def stage(export_dir: Path, into: Path) -> None:
    """Lay out the extra files as they must sit in the model directory."""
    shutil.copytree(PACKAGE, into / PACKAGE.name, ignore=NOT_SHIPPED)
    shutil.copy2(export_dir / SPEC_FILENAME, into / SPEC_FILENAME)


def archiver_command() -> str:
    beside = Path(sys.executable).parent / "torch-model-archiver"
    return str(beside if beside.exists() else "torch-model-archiver")


def build_archive(
    export_dir: Path,
    out_dir: Path,
    name: str = MODEL_NAME,
    version: str | None = None,
    config: Path = MODEL_CONFIG,
) -> Path:
    """Write ``out_dir/name.mar`` and return its path."""
    spec = ModelSpec.load(export_dir)
    weights = export_dir / spec.weights_file
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing: export the model first")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "extra"
        stage(export_dir, staged)
        subprocess.run(
            [
                archiver_command(),
                "--model-name",
                name,
                "--version",
                version or spec.version,
                "--handler",
                str(HANDLER_ENTRY),
                "--serialized-file",
                str(weights),
                "--extra-files",
                str(staged),
                "--config-file",
                str(config),
                "--requirements-file",
                str(REQUIREMENTS),
                "--export-path",
                str(out_dir),
                "--force",
            ],
            check=True,
            # The archiver stages files in $TMPDIR/<model name>: concurrent builds of the same
            # name (tests, the bench, an image build) would overwrite each other's.
            env={**os.environ, "TMPDIR": tmp},
        )
    return out_dir / f"{name}.mar"


def stage_archives(
    declared: ServingState, source: Path, store: Path, config: Path | None = None
) -> None:
    """Copy each archive ``declared`` names from ``source`` into ``store``, with ``config`` as
    its model-config.yaml when given: a pod's ConfigMap then sets workers, batching and the
    handler's limits without a new image (TorchServe and the handler read them from the archive
    only). An archive that is missing, or not one, is left for the serving state's report to
    name: the start goes on with the others."""
    store.mkdir(parents=True, exist_ok=True)
    for spec in declared.versions.values():
        if (source / spec.archive).is_file():
            stage_one(source / spec.archive, store / spec.archive, config)


def stage_one(original: Path, copy: Path, config: Path | None) -> None:
    if config is not None:
        try:
            with_model_config(original, copy, config)
            return
        except (ValueError, zipfile.BadZipFile):
            pass  # not an archive to open: copied as it is, for the report to name
    shutil.copyfile(original, copy)


def with_model_config(original: Path, copy: Path, config: Path) -> None:
    """``original`` written to ``copy`` with ``config`` in place of its model-config.yaml."""
    with zipfile.ZipFile(original) as source:
        if MODEL_CONFIG.name not in source.namelist():
            raise ValueError(f"{original} holds no {MODEL_CONFIG.name} to replace")
        with zipfile.ZipFile(copy, "w") as target:
            for item in source.infolist():
                if item.filename == MODEL_CONFIG.name:
                    target.write(config, MODEL_CONFIG.name)
                    continue
                with source.open(item) as member, target.open(item, "w") as out:
                    shutil.copyfileobj(member, out)
