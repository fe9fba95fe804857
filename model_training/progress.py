"""A training's progress as one small JSON file, for whoever watches the run from another process
(the demo's web page shows it while the first model trains).

The file is always whole: each write goes to a temporary file that then replaces it, so a reader
never sees half an object. Its fields:

    state         training | exporting | starting | ready | failed
    detail        one line for people: what happens now, or why it failed
    epoch         epochs done          epochs        epochs planned
    loss          the last epoch's training loss   val_miou   its validation mIoU
    seconds_left  the training's estimate (null until an epoch has been timed)
    history       [{"epoch", "loss", "val_miou"}, ...], one per epoch done

The trainer writes ``training`` after each epoch and ``exporting`` when its loop ends; the steps
after it (petseg.serving.supervisor) write the other states over the same file, keeping the history.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

STATES = ("training", "exporting", "starting", "ready", "failed")
EMPTY: dict[str, Any] = {
    "state": "starting",
    "detail": "",
    "epoch": 0,
    "epochs": None,
    "loss": None,
    "val_miou": None,
    "seconds_left": None,
    "history": [],
}
"""Every field, as they are before any training: what a reader fills a missing field with."""


def write(path: Path, progress: dict[str, Any]) -> None:
    """Replace ``path`` with ``progress`` in one step (readers see the old or the new file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(progress))
    os.replace(partial, path)


def read_progress(path: Path) -> dict[str, Any]:
    """The progress in ``path`` with every field of ``EMPTY`` (all of EMPTY's if no file yet)."""
    try:
        return {**EMPTY, **json.loads(path.read_text())}
    except FileNotFoundError:
        return dict(EMPTY)


def set_state(path: Path, state: str, detail: str = "") -> None:
    """The same progress in another state: the epochs and their history stay on the page."""
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}: one of {', '.join(STATES)}")
    write(path, {**read_progress(path), "state": state, "detail": detail})


def history_point(record: dict[str, Any]) -> dict[str, Any]:
    """One epoch of the curve, from the trainer's log record (its epochs count from 0)."""
    return {
        "epoch": int(record["epoch"]) + 1,
        "loss": record["train_loss"],
        "val_miou": record["val_miou"],
    }


class TrainingProgress:
    """What the trainer writes into the progress file, and its estimate of the time left: the
    mean duration of the epochs this process ran, times the epochs still to run."""

    def __init__(self, path: Path, epochs: int, done: list[dict[str, Any]]) -> None:
        """``done``: the log records of epochs run before (a resumed training)."""
        self.path, self.epochs = path, epochs
        self.history = [history_point(record) for record in done]
        self.first = len(self.history)
        self.started = time.monotonic()
        self._write("training", "the first epoch runs")

    def epoch_done(self, record: dict[str, Any]) -> None:
        self.history.append(history_point(record))
        self._write("training", f"epoch {len(self.history)} of {self.epochs} done")

    def finished(self) -> None:
        """The loop is over (all epochs, or an early stop): what follows exports the model."""
        self._write("exporting", "training done: evaluating and exporting the best epoch")

    def seconds_left(self) -> float | None:
        ran = len(self.history) - self.first
        if ran == 0:
            return None
        per_epoch = (time.monotonic() - self.started) / ran
        return round(per_epoch * max(0, self.epochs - len(self.history)), 1)

    def _write(self, state: str, detail: str) -> None:
        last = self.history[-1] if self.history else {"loss": None, "val_miou": None}
        write(
            self.path,
            {
                "state": state,
                "detail": detail,
                "epoch": len(self.history),
                "epochs": self.epochs,
                "loss": last["loss"],
                "val_miou": last["val_miou"],
                "seconds_left": 0.0 if state != "training" else self.seconds_left(),
                "history": self.history,
            },
        )
