"""`petseg run --prepare COMMAND`: the page at once, the model made meanwhile, then TorchServe.

On a fresh clone there is no model yet, and `make run` passes `make archive` as COMMAND, which
trains the demo model first (about ten minutes). Rather than a silent terminal for that long,
the page starts at once and shows the training's progress (GET /api/training reads the progress
file the trainer writes); once COMMAND has built the archive, TorchServe starts with the serving
state and the page switches to segmenting by itself.

The steps run in a thread of the web server's process: COMMAND in a process session of its own
(Ctrl-C reaches this process alone, which then stops the whole session), then TorchServe as
`petseg run` starts it. Each step's state goes into the progress file: starting, the trainer's
training and exporting, starting again for TorchServe, then ready; or failed, with the reason,
which the page shows until Ctrl-C, and `petseg run` then exits with status 1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from model_training.progress import EMPTY, set_state, write
from petseg.serving.launcher import Instance, bring_up, start, stop
from petseg.serving.reconcile import describe

STOP_WAIT_S = 30
"""How long COMMAND gets to end after SIGTERM (make removes its half-built target), before
SIGKILL ends whatever is left of its session."""


class Preparation:
    """COMMAND, then TorchServe serving the state, in the background; :meth:`stop` ends both."""

    def __init__(
        self,
        command: str,
        progress_file: Path,
        instance: Instance,
        state_file: Path,
        durable: bool,
    ) -> None:
        self.command, self.progress_file = command, progress_file
        self.instance, self.state_file, self.durable = instance, state_file, durable
        self.failure: str | None = None
        """Why a step failed (None while none did): the page shows it, the exit status says it."""
        self.torchserve: subprocess.Popen | None = None
        self._child: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        """Taken to start a process and to stop: no process starts once stop() has begun."""
        self._thread = threading.Thread(target=self._run, name="preparation", daemon=True)
        # Before the page serves: it must never show an earlier run's state or epochs.
        write(progress_file, {**EMPTY, "detail": "preparing the model"})

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop COMMAND's processes (SIGTERM, then SIGKILL) and TorchServe if it started, and
        wait for the thread: nothing of the preparation outlives `petseg run`."""
        with self._lock:
            self._stopping.set()
            child = self._child
        if child is not None and child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(STOP_WAIT_S)
            # Whatever of the session outlived its leader (or SIGTERM) ends now.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        if self.torchserve is not None:
            print("stopping TorchServe ...", flush=True)
            stop(self.instance, self.torchserve)  # a bring_up under way then fails at once
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        try:
            self._prepare()
            self._serve()
        except Exception as exc:  # shown on the page and in the exit status, never swallowed
            if self._stopping.is_set():
                return  # a step stopped on purpose
            self.failure = f"{type(exc).__name__}: {exc}"
            set_state(self.progress_file, "failed", self.failure)
            print(f"petseg run: {self.failure}\n  Ctrl-C stops the page", file=sys.stderr)

    def _prepare(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            self._child = subprocess.Popen(self.command, shell=True, start_new_session=True)
        status = self._child.wait()
        if status != 0 and not self._stopping.is_set():
            raise RuntimeError(f"{self.command!r} failed with exit status {status}")

    def _serve(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            set_state(self.progress_file, "starting", "starting TorchServe")
            print("starting TorchServe ...", flush=True)
            self.torchserve = start(self.instance)
        report = bring_up(self.instance, self.torchserve, self.state_file, self.durable)
        print("\n".join(describe(report)), flush=True)
        set_state(self.progress_file, "ready", "TorchServe serves the model")
