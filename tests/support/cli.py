"""The `petseg` command run as users run it: in a process of its own, from the repository root
(``python -m petseg``: the code of this checkout, whatever petseg the environment installed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def command(*argv: str) -> list[str]:
    return [sys.executable, "-m", "petseg", *argv]


def petseg(
    *argv: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``petseg ARGV`` in a separate process, as from a shell (``env`` added to ours)."""
    environment = {**os.environ, **(env or {})}
    return subprocess.run(
        command(*argv), capture_output=True, text=True, timeout=timeout, env=environment, cwd=ROOT
    )


def started(*argv: str) -> subprocess.Popen:
    """``petseg ARGV`` started in the background (to be interrupted), its output captured."""
    return subprocess.Popen(
        command(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
