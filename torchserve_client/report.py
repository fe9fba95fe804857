"""What a TorchServe's start applied of the serving state, in a file beside its key file.

The operator's tools write it once the declared state is applied (petseg.serving.reconcile) and
update it when `petseg models` changes the instance. `petseg status`, the web proxy's health and its
/status page read it: an instance counts as ready only once its state is applied, and what could
not be applied (a missing archive, a version TorchServe refused) is named there. It sits beside
key_file.json so that whoever can read the keys (the pod's web container) can read it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

REPORT_FILE_NAME = "serving-report.json"


@dataclass(frozen=True)
class ServingReport:
    """The last application of the serving state to one TorchServe."""

    state: str
    """The state file that was applied."""
    durable: bool
    """Whether `petseg models` writes its changes to that file; False where the deployment
    declares it (a pod's ConfigMap): a change then holds for this instance until it restarts."""
    actions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """What the instance could not serve as declared; empty when it serves all of it."""
    live_changes: list[str] = field(default_factory=list)
    """Changes made on this instance alone since (durable=False only)."""
    rollout: dict[str, Any] | None = None
    """The state's rollout (torchserve_client.rollout.Rollout.as_dict(), its decision with it),
    for the web proxy beside this TorchServe."""
    applied_at: float = field(default_factory=time.time)

    @classmethod
    def read(cls, folder: Path) -> ServingReport | None:
        """The report in ``folder``; None while there is none (the state is not applied yet) or
        it cannot be read (being replaced: the next look finds the new one)."""
        try:
            return cls(**json.loads((Path(folder) / REPORT_FILE_NAME).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def write(self, folder: Path) -> Path:
        path = Path(folder) / REPORT_FILE_NAME
        write_atomically(path, json.dumps(asdict(self), indent=2) + "\n")
        return path

    @staticmethod
    def remove(folder: Path) -> None:
        """Before a start: a report left by the previous TorchServe must not count as this
        one's (a pod's emptyDir outlives a container restart)."""
        (Path(folder) / REPORT_FILE_NAME).unlink(missing_ok=True)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (see :func:`replacing`)."""
    with replacing(path) as out:
        out.write(text)


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[TextIO]:
    """A text file that replaces ``path`` once the block ends: written to a temporary file
    beside it, flushed to disk, then renamed over it, so a reader (or a crash) sees the old file
    or the new one, never a torn one; an exception in the block leaves the old one. Large files
    are written as they are made, never held whole in memory."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)
