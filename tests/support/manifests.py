"""The Kubernetes manifests as kustomize renders them, and the parts the tests read."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"


@functools.cache
def kubectl() -> str:
    """$KUBECTL, the venv's (`make kubectl`), or the machine's, if its kustomize is v5."""
    beside = Path(sys.executable).parent / "kubectl"
    found = os.environ.get("KUBECTL") or (str(beside) if beside.exists() else None)
    found = found or shutil.which("kubectl")
    if found:
        version = subprocess.run([found, "version", "--client"], capture_output=True, text=True)
        if "Kustomize Version: v5" in version.stdout:
            return found
    pytest.fail("no kubectl with kustomize v5: run `make kubectl`")


def kustomize(folder: Path) -> list[dict]:
    """``folder`` rendered as `kubectl apply -k` renders it: no flags, kustomize's default load
    restrictor (files from within each kustomization only)."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def only(objects: list[dict], kind: str) -> dict:
    [found] = [obj for obj in objects if obj["kind"] == kind]
    return found


def pod_spec(objects: list[dict]) -> dict:
    return only(objects, "Deployment")["spec"]["template"]["spec"]


def containers(objects: list[dict]) -> dict[str, dict]:
    return {c["name"]: c for c in pod_spec(objects)["containers"]}
