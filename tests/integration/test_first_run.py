"""`petseg run --prepare` (`make run` on a fresh clone) as a real process: the page answers
before the model exists and shows its training, TorchServe starts once the archive is built,
Ctrl-C stops everything; a failed step shows on the page and ends with exit status 1.

The preparation is the demo's steps with the tiny training of tests/support/training.py, and it
waits for a gate file before training: what the page shows before the training is then certain,
not a race."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from petseg.serving.launcher import (
    ROOT,
    Instance,
    free_ports,
    render_config,
    unused_ports,
    wait_until,
)
from tests.support.training import tiny_train_argv

WAIT_S = 300
"""Generous: the training, TorchServe's start and its worker, on two shared cores."""
CAT = ROOT / "frontend_server" / "static" / "samples" / "cat.jpg"


@pytest.fixture
def instance(tmp_path: Path) -> Instance:
    """Where `petseg run` starts TorchServe: free ports, found by `petseg run` in the workdir's
    config, an empty model store, and a state that serves the archive the preparation builds."""
    instance = Instance(tmp_path / "torchserve", tmp_path / "store", unused_ports())
    instance.model_store.mkdir()
    render_config(instance)
    return instance


def petseg(*argv: str) -> list[str]:
    return [sys.executable, "-m", "petseg", *argv]


def shell(*steps: list[str]) -> str:
    return " && ".join(shlex.join(step) for step in steps)


def wait_for_gate(gate: Path, pid_file: Path) -> str:
    """A shell step that notes its process id (its session's) and waits until ``gate`` exists."""
    pid, gate_file = shlex.quote(str(pid_file)), shlex.quote(str(gate))
    return f"echo $$ > {pid}; until [ -e {gate_file} ]; do sleep 0.1; done"


@contextlib.contextmanager
def petseg_run(
    instance: Instance, tmp_path: Path, prepare: str
) -> Iterator[tuple[subprocess.Popen, str]]:
    """`petseg run --prepare PREPARE --progress tmp_path/progress.json` on a free port:
    (process, page URL); ends it with SIGINT (Ctrl-C) should the test not have."""
    state = tmp_path / "serving.json"
    state.write_text(
        json.dumps({"default": "1.0", "versions": {"1.0": {"archive": "petseg.mar", "workers": 1}}})
    )
    port = free_ports(1)[0]
    command = petseg("--workdir", str(instance.workdir), "--model-store", str(instance.model_store))
    command += ["--state", str(state), "run", "--port", str(port), "--threads", "4"]
    command += ["--prepare", prepare, "--progress", str(tmp_path / "progress.json")]
    env = {**os.environ, "PETSEG_METRICS_ADDRESS": "127.0.0.1:0"}
    with (tmp_path / "run.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(WAIT_S)


def training(page: str) -> dict | None:
    """GET /api/training, or None while the page does not answer yet."""
    try:
        return requests.get(f"{page}/api/training", timeout=10).json()
    except requests.ConnectionError:
        return None


def wait_for_state(process: subprocess.Popen, page: str, *states: str) -> dict:
    """Wait until the page says one of ``states`` (failing at once if `petseg run` exits)."""
    seen: list[dict] = []

    def reached() -> bool:
        seen.append(training(page) or {})
        return seen[-1].get("state") in states

    wait_until(reached, process, WAIT_S, "petseg run", f"never {states}; last {seen[-1:]}")
    return seen[-1]


def alive_in_group(group: int) -> list[int]:
    """The processes of a process group that still run (not zombies waiting for a reaper)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            state, _, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
            if int(pgrp) == group and state != "Z":
                alive.append(int(stat.parent.name))
    return alive


def stopped(process: subprocess.Popen) -> int:
    """Ctrl-C, then the exit status (its output is in run.log should an assertion fail)."""
    process.send_signal(signal.SIGINT)
    return process.wait(WAIT_S)


def test_the_page_answers_before_the_training_and_torchserve_follows_it(
    instance, oxford_dir, tmp_path
):
    gate, run, export = tmp_path / "gate", tmp_path / "run", tmp_path / "export"
    train = tiny_train_argv(oxford_dir, run, "--epochs", "2")
    prepare = shell(
        petseg("train", *train, "--progress", str(tmp_path / "progress.json")),
        petseg("export", "--checkpoint", str(run / "best.pt"), "--out", str(export)),
        petseg("archive", "--export-dir", str(export), "--out", str(instance.model_store)),
    )
    gated = f"{wait_for_gate(gate, tmp_path / 'prepare.pid')} && {prepare}"
    with petseg_run(instance, tmp_path, gated) as (process, page):
        before = wait_for_state(process, page, "starting", "training")
        assert before["state"] == "starting" and before["history"] == []  # the gate holds it
        assert requests.get(f"{page}/", timeout=10).status_code == 200
        assert requests.get(f"{page}/api/health", timeout=10).status_code == 503
        assert not instance.client().health().reachable  # no TorchServe before the model
        assert not (instance.model_store / "petseg.mar").exists()

        gate.touch()
        ready = wait_for_state(process, page, "ready", "failed")
        assert ready["state"] == "ready", ready["detail"]
        assert ready["epoch"] == ready["epochs"] == 2  # the trainer's epochs, kept
        assert [point["epoch"] for point in ready["history"]] == [1, 2]
        assert requests.get(f"{page}/api/health", timeout=10).status_code == 200
        mask = requests.post(f"{page}/api/segment", files={"file": CAT.read_bytes()}, timeout=60)
        assert mask.status_code == 200 and mask.json()["model"]["version"] == "1.0"

        assert stopped(process) == 0
    assert not instance.client().health().reachable  # Ctrl-C stopped TorchServe too


def test_ctrl_c_while_preparing_stops_the_preparation(instance, tmp_path):
    pid_file = tmp_path / "prepare.pid"
    with petseg_run(instance, tmp_path, wait_for_gate(tmp_path / "gate", pid_file)) as started:
        process, page = started
        wait_for_state(process, page, "starting")
        wait_until(pid_file.exists, process, WAIT_S, "petseg run", "the preparation never ran")
        assert stopped(process) == 0
    session = int(pid_file.read_text())
    wait_until(lambda: not alive_in_group(session), None, WAIT_S, "", "the preparation lives on")
    assert not instance.client().health().reachable


def test_a_failed_preparation_shows_on_the_page_and_exits_with_status_1(instance, tmp_path):
    with petseg_run(instance, tmp_path, "echo no data >&2; exit 3") as (process, page):
        failed = wait_for_state(process, page, "failed")
        assert "exit status 3" in failed["detail"]
        assert requests.get(f"{page}/", timeout=10).status_code == 200  # the page stays
        assert requests.get(f"{page}/api/health", timeout=10).status_code == 503
        assert stopped(process) == 1
    log = (tmp_path / "run.log").read_text()
    assert "exit status 3" in log and "no data" in log
    assert not instance.client().health().reachable  # TorchServe never started
