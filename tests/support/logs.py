"""Reading the logs the servers write while a test runs."""

from __future__ import annotations

import time
from pathlib import Path


def wait_for_line(log: Path, text: str, timeout: float = 10) -> str:
    """The first line of ``log`` that holds ``text``; TorchServe's logs lag their requests."""
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in log.read_text().splitlines() if text in line]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"{text!r} not in {log} after {timeout} s"
        time.sleep(0.2)
