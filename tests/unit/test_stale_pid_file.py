"""A TorchServe pid file left by an instance whose TorchServe died (SIGKILL, a lost machine) must
not let stopping or starting that instance end another instance's TorchServe, which may hold
the dead one's pid by now (pids wrap). `torchserve --stop` itself checks only that the pid's
command line names TorchServe's main class."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from handler.protocol import Ports
from petseg.serving import launcher

MAIN_CLASS = "org.pytorch.serve.ModelServer"


def instance_in(folder: Path) -> launcher.Instance:
    return launcher.Instance(folder, folder / "store", Ports(*launcher.free_ports(6)))


@contextlib.contextmanager
def pretend(config_file: Path) -> Iterator[subprocess.Popen]:
    """A process whose command line reads like a TorchServe JVM started with ``config_file``."""
    command = [sys.executable, "-c", "import time; time.sleep(120)", MAIN_CLASS, "-f"]
    process = subprocess.Popen([*command, str(config_file)])
    try:
        deadline = time.monotonic() + 10
        while MAIN_CLASS not in psutil.Process(process.pid).cmdline():  # until it has exec'd
            assert time.monotonic() < deadline
            time.sleep(0.01)
        yield process
    finally:
        process.kill()
        process.wait()


def write_pid_file(instance: launcher.Instance, pid: int) -> Path:
    """Where TorchServe writes it: the TMPDIR that Instance.env() gives it."""
    tmp = Path(instance.env()["TMPDIR"])
    pid_file = tmp / ".model_server.pid"
    pid_file.write_text(f"{pid}\n")
    return pid_file


def test_stopping_an_instance_whose_pid_went_to_another_torchserve_leaves_that_one(
    tmp_path: Path,
) -> None:
    dead = instance_in(tmp_path / "dead")
    with pretend(tmp_path / "other" / "config.properties") as other_torchserve:
        pid_file = write_pid_file(dead, other_torchserve.pid)
        launcher.stop(dead, timeout=10)
        assert other_torchserve.poll() is None, "the other instance's TorchServe was stopped"
    assert not pid_file.exists()


def test_a_pid_file_naming_this_instances_own_torchserve_is_kept(tmp_path: Path) -> None:
    """The check keys on the instance's own config file: `torchserve --stop` still finds the
    instance's live TorchServe."""
    own = instance_in(tmp_path / "own")
    with pretend(own.workdir / "config.properties") as process:
        pid_file = write_pid_file(own, process.pid)
        launcher.forget_stale_pid_file(own)
        assert pid_file.read_text() == f"{process.pid}\n"
    launcher.forget_stale_pid_file(own)
    assert not pid_file.exists(), "a pid file of a TorchServe that is gone"
