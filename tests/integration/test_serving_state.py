"""The serving state against real TorchServes started by `petseg serve`: what operators register,
scale and set as default survives a stop, a SIGKILL of everything, and two operators at once;
a state naming an archive that cannot be served still serves the rest and says why."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
import yaml

from petseg.packaging.archive import MODEL_CONFIG, build_archive
from petseg.serving.launcher import running_instance, stop
from tests.support.cli import petseg
from tests.support.stack import name_ports, running_web

V2 = "2.0"
OLDER = "0.9"


@pytest.fixture(scope="module")
def store(model_store: Path, tiny_export: Path, tmp_path_factory) -> Path:
    """1.0 (petseg.mar), 2.0 (petseg-v2.mar), 0.9 (petseg-older.mar, whose model-config.yaml
    names minWorkers, as petseg's archives once did) and an archive that is not one
    (corrupt.mar)."""
    folder = tmp_path_factory.mktemp("state-store")
    shutil.copy(model_store / "petseg.mar", folder)
    build_archive(tiny_export, folder, name="petseg-v2", version=V2)
    older = yaml.safe_load(MODEL_CONFIG.read_text()) | {"minWorkers": 2, "maxWorkers": 2}
    config = tmp_path_factory.mktemp("older-config") / "model-config.yaml"
    config.write_text(yaml.safe_dump(older))
    build_archive(tiny_export, folder, name="petseg-older", version=OLDER, config=config)
    (folder / "corrupt.mar").write_bytes(b"PK\x03\x04 cut short")
    return folder


def write_state(path: Path, default: str, **versions: dict) -> Path:
    path.write_text(json.dumps({"default": default, "versions": versions}, indent=2))
    return path


@pytest.fixture
def deployment(store: Path, tmp_path: Path) -> Iterator[tuple[str, ...]]:
    """The global options of every call (a private TorchServe folder, the store, a state
    serving 1.0 with one worker); whatever TorchServe it started is stopped at the end."""
    workdir = tmp_path / "torchserve"
    state = write_state(tmp_path / "serving.json", "1.0", **{"1.0": one_worker("petseg.mar")})
    yield ("--workdir", str(workdir), "--model-store", str(store), "--state", str(state))
    stop(running_instance(workdir))


def one_worker(archive: str) -> dict:
    return {"archive": archive, "workers": 1}


def ok(*argv: str) -> str:
    done = petseg(*argv)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def serve(options: tuple[str, ...]) -> str:
    return ok(*options, "serve", "--free-ports")


def served(options: tuple[str, ...]) -> tuple[str, dict[str, int]]:
    """What TorchServe serves now: the default version, and each version's workers."""
    entries = json.loads(ok(*options, "models", "describe"))
    workdir = Path(options[options.index("--workdir") + 1])
    default = running_instance(workdir).client().default_version()
    return default, {e["modelVersion"]: len(e["workers"]) for e in entries}


def state_of(options: tuple[str, ...]) -> dict:
    return json.loads(Path(options[options.index("--state") + 1]).read_text())


def test_an_older_archive_that_names_its_workers_is_scaled_to_the_declared_count(
    deployment, tmp_path
):
    """TorchServe 0.12 starts the minWorkers an archive names whatever the registration asks."""
    options = deployment
    write_state(tmp_path / "serving.json", OLDER, **{OLDER: one_worker("petseg-older.mar")})
    started = serve(options)
    assert (
        "registered 0.9 (petseg-older.mar) with 1 workers (its model-config.yaml asks for 2)"
        in started
    )
    assert served(options) == (OLDER, {OLDER: 1})


def test_versions_default_and_workers_survive_a_stop_a_kill_and_an_unregister(deployment):
    options = deployment
    serve(options)
    registered = ok(*options, "models", "register", "petseg-v2.mar", "--workers", "1")
    assert "registered 2.0 (petseg-v2.mar) with 1 workers" in registered
    assert "asks for" not in registered, "TorchServe started another count, then was scaled"
    assert served(options) == ("1.0", {"1.0": 1, V2: 1}), "--workers 1 was not honoured"
    ok(*options, "models", "set-default", V2)
    ok(*options, "models", "scale", "2", "--version", V2)
    wanted = (V2, {"1.0": 1, V2: 2})
    assert served(options) == wanted
    assert state_of(options)["default"] == V2
    assert state_of(options)["versions"][V2] == {"archive": "petseg-v2.mar", "workers": 2}

    ok(*options, "stop")
    started = serve(options)
    assert "registered 2.0 (petseg-v2.mar) with 2 workers" in started
    assert served(options) == wanted, "a stop and a start reverted the state"

    ok(*options, "models", "unregister", "1.0")
    kill_everything(Path(options[1]))
    serve(options)
    assert served(options) == (V2, {V2: 2}), "a SIGKILL of TorchServe reverted the state"
    assert set(state_of(options)["versions"]) == {V2}, "an unregistered version came back"


def kill_everything(workdir: Path) -> None:
    """SIGKILL TorchServe's launcher, its Java frontend and its workers, as a crash would:
    every process whose TMPDIR is the instance's."""
    tmp = str(workdir / "tmp")
    victims = []
    for process in psutil.process_iter(["pid"]):
        try:
            if process.environ().get("TMPDIR") == tmp:
                victims.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    names = " ".join(" ".join(p.cmdline()) for p in victims)
    assert "org.pytorch.serve.ModelServer" in names and "model_service_worker" in names
    for process in victims:
        process.send_signal(signal.SIGKILL)
    psutil.wait_procs(victims, timeout=30)


def test_two_operators_at_once_leave_both_changes_in_a_valid_state(deployment):
    options = deployment
    serve(options)
    calls = [
        ["models", "register", "petseg-v2.mar", "--workers", "1"],
        ["models", "scale", "2", "--version", "1.0"],
    ]
    petseg_script = Path(sys.executable).parent / "petseg"
    running = [
        subprocess.Popen([petseg_script, *options, *call], stdout=subprocess.PIPE, text=True)
        for call in calls
    ]
    assert [process.wait(timeout=300) for process in running] == [0, 0]
    for process in running:
        process.stdout.close()
    assert state_of(options) == {
        "default": "1.0",
        "versions": {
            "1.0": {"archive": "petseg.mar", "workers": 2},
            V2: {"archive": "petseg-v2.mar", "workers": 1},
        },
    }
    assert served(options) == ("1.0", {"1.0": 2, V2: 1})


def test_a_change_torchserve_or_the_state_refuses_writes_nothing(deployment):
    options = deployment
    serve(options)
    before = Path(options[options.index("--state") + 1]).read_bytes()
    ok(*options, "models", "register", "petseg-v2.mar", "--workers", "1")
    after_register = Path(options[options.index("--state") + 1]).read_bytes()
    assert after_register != before
    for argv, words in [
        (("register", "petseg-v2.mar"), "HTTP 409"),  # TorchServe: already registered
        (("set-default", "9.9"), "not in the serving state"),
        (("unregister", "1.0"), "is the default"),
        (("register", "corrupt.mar"), "not a readable model archive"),
        (("register", "missing.mar"), "not in the model store"),
    ]:
        done = petseg(*options, "models", *argv)
        assert done.returncode == 2 and words in done.stderr, (argv, done.stderr)
        assert Path(options[options.index("--state") + 1]).read_bytes() == after_register, argv
    assert served(options) == ("1.0", {"1.0": 1, V2: 1})


def test_archives_that_cannot_be_served_are_named_and_the_rest_is_served(
    deployment, store, tmp_path
):
    options = deployment
    state = write_state(
        Path(options[options.index("--state") + 1]),
        "3.0",
        **{
            "1.0": one_worker("petseg.mar"),
            "3.0": one_worker("missing.mar"),
            "4.0": one_worker("corrupt.mar"),
            "5.0": one_worker("petseg-v2.mar"),  # holds 2.0
        },
    )
    declared = state.read_bytes()
    started = serve(options)
    assert "PROBLEM: version 3.0 (missing.mar): missing.mar is not in the model store" in started
    assert "PROBLEM: version 4.0 (corrupt.mar): corrupt.mar is not a readable" in started
    assert "PROBLEM: version 5.0 (petseg-v2.mar): petseg-v2.mar holds version 2.0" in started
    assert "PROBLEM: the default version 3.0 is not served (1.0 is)" in started
    assert served(options) == ("1.0", {"1.0": 1})

    status = petseg(*options, "status")
    assert status.returncode == 0, "the instance serves what it can: ready"
    assert "missing.mar is not in the model store" in status.stdout
    instance = running_instance(Path(options[1]))
    name_ports(instance)
    with running_web(instance) as web:
        health = requests.get(f"{web.url}/api/health", timeout=10)
        assert health.status_code == 200
        assert len(health.json()["problems"]) == 4
        assert "missing.mar" in " ".join(health.json()["problems"])
        page = requests.get(f"{web.operator_url}/status", timeout=10).text
        assert "4 problem(s)" in page and "missing.mar is not in the model store" in page
    assert state.read_bytes() == declared, "the state file lost what could not be served"


def test_nothing_servable_fails_the_start_with_the_reason(deployment, tmp_path):
    options = deployment
    write_state(Path(options[-1]), "3.0", **{"3.0": one_worker("missing.mar")})
    done = petseg(*options, "serve", "--free-ports")
    assert done.returncode == 2
    assert "nothing of the serving state could be served" in done.stderr
    assert "missing.mar is not in the model store" in done.stderr
    assert not running_instance(Path(options[1])).client().health().reachable


def test_a_deployment_declared_state_changes_the_instance_only_and_says_so(deployment):
    options = (*deployment, "--read-only-state")
    serve(options)
    before = Path(deployment[-1]).read_bytes()
    done = petseg(*deployment[:-2], "models", "scale", "2")  # no --state: the instance's
    assert done.returncode == 0, done.stderr
    assert "changed the running instance only, until it restarts" in done.stderr
    assert "change config/serving.json and roll it out" in done.stderr
    assert Path(deployment[-1]).read_bytes() == before
    assert served(deployment) == ("1.0", {"1.0": 2})
    status = ok(*deployment, "status")
    assert "changed here only, until a restart: models scale 2" in status
