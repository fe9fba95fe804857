"""The fleet's processes, started by us or found in a record: alive, signalled, reaped.

A process the cluster started is a child of whichever process started it (`petseg cluster
start`, the keeper); one found in the cluster's record may belong to another parent. Both must
read the same way: a child that exited is reaped (else it lingers as a zombie that "runs"), and
a zombie of another parent counts as dead.

A record names a process by its pid *and* its start time (:class:`Recorded`). A pid alone is
not a name: once its process is gone the kernel hands it to the next new process (pids wrap
at 32768 on many machines, and each JVM thread takes one), and a signal sent by a stale pid
would stop whatever runs under it now, say another instance's TorchServe.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Recorded:
    """A process as a record names it: its pid and its start time (psutil's create_time,
    seconds since the epoch, the same read from any process)."""

    pid: int
    started: float

    @classmethod
    def of(cls, pid: int) -> Recorded:
        """The process running as ``pid`` now (just started by us: it cannot have gone yet,
        a child we have not waited for keeps its pid)."""
        return cls(pid, psutil.Process(pid).create_time())

    def _same(self) -> bool | None:
        """True: ``pid`` runs this process; False: another one; None: no process has it."""
        try:
            return abs(psutil.Process(self.pid).create_time() - self.started) < 0.01
        except psutil.NoSuchProcess:
            return None

    def alive(self) -> bool:
        """It runs (a child of ours is reaped; a zombie left by another parent is dead)."""
        child = _children.get(self)
        if child is not None:
            return child.poll() is None
        try:
            process = psutil.Process(self.pid)
            return self._same() is True and process.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def signal(self, signum: int) -> None:
        """``signum`` to this process; nothing when it is gone, whoever holds its pid now."""
        if self._same():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def signal_group(self, signum: int) -> None:
        """``signum`` to the process group this process leads (it started a session of its
        own): the leader may be gone while the rest of its group runs (TorchServe's Java and
        workers), and a pid still naming a group is never handed to a new process."""
        if self._same() is not False:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signum)

    def reap(self, timeout: float = 30) -> None:
        """Wait until it is gone (a child of ours is waited for); SIGKILL it after
        ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                break
            time.sleep(0.1)
        else:
            self.signal(signal.SIGKILL)
        child = _children.pop(self, None)
        if child is not None:
            child.wait()


_children: dict[Recorded, subprocess.Popen] = {}
"""Processes this process started, kept to be waited for (no zombies, no ResourceWarning)."""


def adopt(process: subprocess.Popen) -> Recorded:
    """``process``, just started by us, kept to be waited for; the record that names it."""
    recorded = Recorded.of(process.pid)
    _children[recorded] = process
    return recorded
