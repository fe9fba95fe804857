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


SERVER = "petseg"
"""The server Deployment: TorchServe and the web proxy, one pod a replica."""
DECIDER = "petseg-decider"
"""The rollout's decider, one pod."""


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


def only(objects: list[dict], kind: str, name: str | None = None) -> dict:
    """The one object of ``kind`` (the one named ``name``, where a kind has several)."""
    [found] = [obj for obj in of_kind(objects, kind) if name in (None, obj["metadata"]["name"])]
    return found


def server_config(objects: list[dict]) -> dict:
    """The ConfigMap generated from config/ (its name ends in a hash of its contents)."""
    [found] = [
        obj
        for obj in of_kind(objects, "ConfigMap")
        if obj["metadata"]["name"].startswith("petseg-config-")
    ]
    return found


def pod_spec(objects: list[dict], deployment: str = SERVER) -> dict:
    return only(objects, "Deployment", deployment)["spec"]["template"]["spec"]


def pod_labels(objects: list[dict], deployment: str = SERVER) -> dict[str, str]:
    return only(objects, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"]


def containers(objects: list[dict], deployment: str = SERVER) -> dict[str, dict]:
    return {c["name"]: c for c in pod_spec(objects, deployment)["containers"]}
