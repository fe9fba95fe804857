"""Polling for what real processes do in their own time: a test waits for a condition or for a
figure to settle, with a deadline that names what never came, instead of sleeping a guess."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(check: Callable[[], object], timeout: float, what: str, every: float = 0.1) -> float:
    """Seconds until ``check()`` is true (polled every ``every`` s); fails after ``timeout``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"{what}: not after {timeout} s"
        time.sleep(every)
    return time.monotonic() - started


def settled(read: Callable[[], object], quiet_s: float = 3.0, timeout: float = 120) -> object:
    """``read()`` once it stopped changing for ``quiet_s``: work queued before a decision (a
    proxy holds up to 8 shadows) still runs and is counted after it, later on a loaded machine."""
    started = time.monotonic()
    last, since = read(), time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() - started < timeout, f"still changing after {timeout} s: {last}"
        time.sleep(0.5)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
    return last
