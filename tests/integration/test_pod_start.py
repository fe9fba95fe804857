"""The Kubernetes model server's start, run here: the Deployment's command line as kustomize
renders it, with the image's folders mapped to the test's, on a small archive set. It applies a
declared state with two versions and a trial, is ready only then, keeps a pod-local change out
of the state, ends the trial when the fleet's decision appears in its decisions folder (as the
kubelet writes it when the decider patches the ConfigMap) without a restart, and ends by
SIGTERM as a container under tini does."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from petseg.packaging.archive import build_archive
from petseg.serving import decisions
from petseg.serving.decisions import DECISION_KEY
from petseg.serving.launcher import running_instance
from petseg.serving.pod_decisions import FOLLOW_INTERVAL_S
from tests.support.cli import petseg
from tests.support.manifests import K8S, ROOT, containers, kustomize
from torchserve_client import ServingReport
from torchserve_client.rollout import Decision, Rollout

IMAGE_PATHS = {
    "/var/lib/petseg/model-store": "pod-store",
    "/srv/petseg/model-store": "image-store",
    "/opt/petseg/app/config/model-config.yaml": "config-map/model-config.yaml",
    "/etc/petseg/decisions": "decisions",
}
"""The image's folders and the ConfigMaps' mounts -> the test's folders."""
TRIAL = Rollout("1.0", "canary", 10, started_at=1_700_000_000.0)


def pod_command(folder: Path) -> list[str]:
    """The model-server container's args from the rendered cpu overlay, as the image's petseg
    wrapper runs them (--workdir first), with the test's folders, free ports on loopback and
    the state of the test's ConfigMap."""
    server = containers(kustomize(K8S / "overlays" / "cpu"))["model-server"]
    args = list(server["args"])
    assert args[0] == "petseg"
    mapped = []
    for arg in args[1:]:
        for image_path, local in IMAGE_PATHS.items():
            arg = arg.replace(image_path, str(folder / local))
        arg = arg.replace("$(PETSEG_NUMBER_OF_GPU)", "0").replace("0.0.0.0", "127.0.0.1")
        mapped.append(arg)
    serve = mapped.index("serve")
    state = ["--state", str(folder / "config-map" / "serving.json")]
    workdir = ["--workdir", str(folder / "run")]
    script = str(Path(sys.executable).parent / "petseg")
    return [
        script,
        *workdir,
        *mapped[:serve],
        *state,
        "serve",
        "--free-ports",
        *mapped[serve + 1 :],
    ]


@pytest.fixture
def pod_folder(model_store: Path, tiny_export: Path, tmp_path: Path) -> Path:
    """The image's store (1.0 and 2.0), a ConfigMap declaring both, 2.0 the default and 1.0 on
    trial, and the decisions ConfigMap's folder, empty (no decision yet)."""
    (tmp_path / "image-store").mkdir()
    shutil.copy(model_store / "petseg.mar", tmp_path / "image-store")
    build_archive(tiny_export, tmp_path / "image-store", name="petseg-v2", version="2.0")
    config_map = tmp_path / "config-map"
    config_map.mkdir()
    model_config = yaml.safe_load((ROOT / "config" / "model-config.yaml").read_text())
    model_config["handler"]["jpeg_quality"] = 84  # tells the ConfigMap's copy from the image's
    (config_map / "model-config.yaml").write_text(yaml.safe_dump(model_config))
    state = {
        "default": "2.0",
        "versions": {
            "1.0": {"archive": "petseg.mar", "workers": 1},
            "2.0": {"archive": "petseg-v2.mar", "workers": 1},
        },
        "rollout": TRIAL.as_dict(),
    }
    (config_map / "serving.json").write_text(json.dumps(state))
    (tmp_path / "decisions").mkdir()
    return tmp_path


def test_the_pods_start_applies_a_two_version_state_and_ends_by_sigterm(pod_folder: Path):
    environment = {**os.environ, "TMPDIR": str(pod_folder / "tmp")}
    (pod_folder / "tmp").mkdir()
    log = (pod_folder / "pod.log").open("wb")
    pod = subprocess.Popen(
        pod_command(pod_folder),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=environment,
        start_new_session=True,
    )
    workdir = ("--workdir", str(pod_folder / "run"))
    try:
        deadline = time.monotonic() + 240
        while petseg(*workdir, "status").returncode != 0:  # the probes' command
            assert pod.poll() is None, (pod_folder / "pod.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "not ready in 240 s"
            time.sleep(1)
        client = running_instance(pod_folder / "run").client()
        workers = {e["modelVersion"]: len(e["workers"]) for e in client.describe()}
        assert client.default_version() == "2.0" and workers == {"1.0": 1, "2.0": 1}
        for name in ("petseg.mar", "petseg-v2.mar"):  # the ConfigMap's model-config inside
            with zipfile.ZipFile(pod_folder / "pod-store" / name) as archive:
                inside = yaml.safe_load(archive.read("model-config.yaml"))
                assert inside["handler"]["jpeg_quality"] == 84

        done = petseg(*workdir, "models", "scale", "2", "--version", "1.0")
        assert done.returncode == 0, done.stderr
        assert "changed the running instance only, until it restarts" in done.stderr
        assert "roll it out" in done.stderr
        assert json.loads((pod_folder / "config-map" / "serving.json").read_text())["default"]

        assert reported_rollout(pod_folder) == TRIAL
        decided = TRIAL.decided(Decision("aborted", "the fleet's decider", "masks disagree"))
        (pod_folder / "decisions" / DECISION_KEY).write_text(decisions.encode(decided))
        deadline = time.monotonic() + 3 * FOLLOW_INTERVAL_S + 5
        while reported_rollout(pod_folder) != decided:
            assert time.monotonic() < deadline, "the decision did not reach the report"
            time.sleep(0.2)
        assert pod.poll() is None, "restarted"
    finally:
        with contextlib.suppress(ProcessLookupError):  # what tini -g does to a deleted pod
            os.killpg(pod.pid, signal.SIGTERM)
        pod.wait(timeout=60)
        log.close()
    assert pod.returncode == -signal.SIGTERM
    output = (pod_folder / "pod.log").read_text()
    assert "registered 2.0 (petseg-v2.mar)" in output and "registered 1.0" in output
    assert output.index("registered 2.0") < output.index("registered 1.0"), "default first"
    assert "this pod now applies the fleet's decision: the canary of 1.0 was aborted" in output


def reported_rollout(pod_folder: Path) -> Rollout | None:
    """The rollout the pod's serving report holds now (what its web proxy reads)."""
    report = ServingReport.read(pod_folder / "run")
    return None if report is None or not report.rollout else Rollout.from_dict(report.rollout)
