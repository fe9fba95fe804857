"""The fleet's processes, started by us or found by pid in a record: alive, signalled, reaped.

A process the cluster started is a child of whichever process started it (`petseg cluster
start`, the keeper); one found by pid in the cluster's record may belong to another parent. Both
must read the same way: a child that exited is reaped (else it lingers as a zombie that "runs"),
and a zombie of another parent counts as dead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import psutil

_children: dict[int, subprocess.Popen] = {}
"""Processes this process started, kept to be waited for (no zombies, no ResourceWarning)."""


def process_alive(pid: int) -> bool:
    """``pid`` runs (a child of ours is reaped; a zombie left by another parent is dead)."""
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def adopt(process: subprocess.Popen) -> subprocess.Popen:
    _children[process.pid] = process
    return process


def signal_process(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def reap(pid: int, timeout: float = 30) -> None:
    """Wait until ``pid`` is gone (a child of ours is waited for); SIGKILL it after
    ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_alive(pid):
            break
        time.sleep(0.1)
    else:
        signal_process(pid, signal.SIGKILL)
    child = _children.pop(pid, None)
    if child is not None:
        child.wait()
