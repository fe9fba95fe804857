"""Each package imports only downwards: what the archive, the web image and the CLI carry."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "numpy", "PIL", "segmentation_models_pytorch")
STDLIB = set(sys.stdlib_module_names)
ALLOWED = {
    # package: top-level modules its files may import besides the standard library
    "handler": {
        "handler",
        "torch",
        "numpy",
        "PIL",
        "segmentation_models_pytorch",
        "ts",
        "pycocotools",
    },
    "torchserve_client": {"torchserve_client", "handler.protocol"},
    "frontend_server": {
        "frontend_server",
        "flask",
        "werkzeug",
        "waitress",
        "prometheus_client",
        "torchserve_client",
        "handler.protocol",
        "model_training.progress",
    },
}


def imported_modules(package: str) -> set[str]:
    """Every module a package's files import (absolute imports, as this project writes them)."""
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module)
    return found


def allowed(module: str, permitted: set[str]) -> bool:
    top = module.split(".")[0]
    if top in STDLIB or top == "__future__":
        return True
    return any(module == p or module.startswith(p + ".") or top == p for p in permitted)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_import_only_downwards(package):
    stray = sorted(m for m in imported_modules(package) if not allowed(m, ALLOWED[package]))
    assert not stray, f"{package} imports {stray}"


PETSEG_LAYERS = ["serving", "packaging", "rollout", "fleet", "bulk", "labelling"]
"""petseg's subpackages, in the order petseg/__init__.py gives: each may import those before
it (petseg.cli, the command line, any of them)."""


def test_petseg_is_split_by_job_and_its_subpackages_import_only_upwards_in_the_list():
    petseg = ROOT / "petseg"
    folders = {p.name for p in petseg.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == {*PETSEG_LAYERS, "cli"}, "petseg/ holds a folder of no known job"
    modules = sorted(p.name for p in petseg.glob("*.py"))
    assert modules == ["__init__.py", "__main__.py"], "a module of petseg/ outside its jobs"
    for index, layer in enumerate(PETSEG_LAYERS):
        below = {f"petseg.{other}" for other in PETSEG_LAYERS[: index + 1]}
        used = {m for m in imported_modules(f"petseg/{layer}") if m.startswith("petseg.")}
        stray = sorted(m for m in used if not any(m == b or m.startswith(b + ".") for b in below))
        assert not stray, f"petseg.{layer} imports {stray}"


def test_the_protocol_the_spec_and_the_progress_file_need_only_the_standard_library():
    for module in ("handler/protocol.py", "handler/spec.py", "model_training/progress.py"):
        tree = ast.parse((ROOT / module).read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert {name.split(".")[0] for name in names} <= STDLIB | {"__future__"}, module


def modules_after(code: str) -> set[str]:
    """sys.modules of a fresh interpreter after running ``code`` (imports are process-wide)."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_the_web_app_never_loads_torch_numpy_pil_or_the_handler():
    loaded = modules_after("from frontend_server import create_app\ncreate_app()")
    assert "flask" in loaded and "torchserve_client" in loaded
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]
    assert {m for m in loaded if m.split(".")[0] == "handler"} <= {"handler", "handler.protocol"}
    assert "handler.petseg_handler" not in loaded and "petseg" not in loaded
    training = {m for m in loaded if m.split(".")[0] == "model_training"}
    assert training <= {"model_training", "model_training.progress"}


def test_the_operator_command_starts_without_torch():
    loaded = modules_after("from petseg.cli import get_args_parser\nget_args_parser()")
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]


def test_a_training_commands_help_answers_before_torch_is_imported():
    """`petseg train --help` (and a wrong flag) is parsed before the command's module loads."""
    run = "commands.run('train', ['--help'], 'petseg')"
    code = f"from model_training import commands\ntry:\n    {run}\nexcept SystemExit:\n    pass"
    loaded = modules_after(code)
    assert "model_training.arguments" in loaded and "model_training.train" not in loaded
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]


def test_the_pipeline_needs_neither_torchserve_nor_the_speed_machinery():
    """Moving to another server means a new adapter beside handler/petseg_handler.py, nothing
    in the pipeline; its forward pass is handed in, so it schedules nothing itself."""
    loaded = modules_after("import handler.pipeline")
    assert "torch" in loaded and "handler.decoding" in loaded
    assert not [m for m in loaded if m.split(".")[0] == "ts"]
    machinery = {"handler.runtime", "handler.threads", "handler.petseg_handler"}
    assert not loaded & machinery
