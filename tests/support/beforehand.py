"""Slow preparations started in the background as the run begins (tests/conftest.py), for tests
that come late in it: the images' layers, Label Studio's install. Each is single-threaded or
disk-bound work that can use a core the tests leave idle (a cluster's start keeps one of two
idle). Where the suite keeps both cores busy, as a whole run on 2 cores mostly does, it moves
the work rather than removing it: measured, the labelling fixture went from 120 s to 46 s and
the run as a whole did not get shorter.

The tests still prepare what they need themselves, under the same lock: they wait for the
background work instead of repeating it, and a failure there (left quiet here) happens again in
the test, loudly."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable


def in_background(name: str, work: Callable[[], object]) -> threading.Thread:
    """``work`` started on a daemon thread named ``name``."""

    def quietly() -> None:
        with contextlib.suppress(Exception):
            work()

    thread = threading.Thread(target=quietly, name=name, daemon=True)
    thread.start()
    return thread
