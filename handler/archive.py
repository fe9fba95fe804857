"""Build the .mar: exported weights + model_spec.json + handler + model-config.yaml.

    python -m handler.archive --export-dir exported/petseg --out model_store

The archive is self-contained: besides the weights it carries the handler package and the few
model_training modules the handler imports (spec, imaging, model), so any TorchServe with torch,
segmentation-models-pytorch and Pillow installed (handler/requirements.txt) can serve it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from model_training.spec import SPEC_FILENAME, ModelSpec

ROOT = Path(__file__).resolve().parents[1]
HANDLER_ENTRY = ROOT / "handler" / "petseg_handler.py"
PACKAGED_MODULES = {
    "handler": [
        "__init__.py",
        "batch.py",
        "decoding.py",
        "rendering.py",
        "requests.py",
        "settings.py",
    ],
    "model_training": ["__init__.py", "imaging.py", "model.py", "spec.py"],
}
MODEL_CONFIG = ROOT / "config" / "model-config.yaml"
REQUIREMENTS = ROOT / "handler" / "requirements.txt"


def stage(export_dir: Path, into: Path) -> None:
    """Lay out the extra files as they must sit in the model directory."""
    for package, modules in PACKAGED_MODULES.items():
        (into / package).mkdir(parents=True)
        for module in modules:
            shutil.copy2(ROOT / package / module, into / package / module)
    shutil.copy2(export_dir / SPEC_FILENAME, into / SPEC_FILENAME)


def build_archive(
    export_dir: Path,
    out_dir: Path,
    name: str = "petseg",
    version: str | None = None,
    config: Path = MODEL_CONFIG,
) -> Path:
    """Write ``out_dir/name.mar`` and return its path."""
    spec = ModelSpec.load(export_dir)
    weights = export_dir / spec.weights_file
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing: export the model first")
    out_dir.mkdir(parents=True, exist_ok=True)
    archiver = Path(sys.executable).parent / "torch-model-archiver"
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "extra"
        stage(export_dir, staged)
        subprocess.run(
            [
                str(archiver if archiver.exists() else "torch-model-archiver"),
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
        )
    return out_dir / f"{name}.mar"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export-dir", type=Path, default=ROOT / "exported" / "petseg")
    parser.add_argument("--out", type=Path, default=ROOT / "model_store")
    parser.add_argument("--name", default="petseg")
    parser.add_argument("--version", help="archive version (default: the spec's)")
    args = parser.parse_args(argv)
    path = build_archive(args.export_dir, args.out, args.name, args.version)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
