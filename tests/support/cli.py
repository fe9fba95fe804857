"""The `petseg` command run as users run it: the installed script, in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def petseg(
    *argv: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``petseg ARGV`` in a separate process, as from a shell (``env`` added to ours)."""
    command = [str(Path(sys.executable).parent / "petseg"), *argv]
    environment = {**os.environ, **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)
