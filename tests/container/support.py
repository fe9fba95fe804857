"""The images as the container tests build and run them, and what they measured (helpers for
conftest.py and the test module: a test module never imports another)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from filelock import FileLock

from deploy import images
from tests.support.beforehand import in_background

TAG = "test"
"""The tests' tag: a user's `make image` (tag latest) is left alone; both share the layers."""
POD_PREFIX = "petseg-test-"
BUILDING = FileLock(images.STATE / "tests-building.lock")
"""Held while the tests warm or build the images: on several processes (`make test`), one
warms, and a build in another waits for it instead of building the same layers beside it."""
MEASURED: dict[str, str] = {}
"""Build and stop times, sizes, time to ready: printed at the end of the run."""


@dataclass(frozen=True)
class Pod:
    name: str
    url: str
    """The page, through the port published on 127.0.0.1."""

    @property
    def server(self) -> str:
        return images.container_names(self.name)[0]

    @property
    def web(self) -> str:
        return images.container_names(self.name)[1]


WARMING: list[threading.Thread] = []
"""The run's warm-up of the images' layers, once it started (tests/conftest.py): building
torch's layers cold takes minutes of mostly disk work, which the other tests hide (the
container tests run last)."""


def start_warming() -> None:
    def warm() -> None:
        with BUILDING:
            images.warm(images.BuildOptions(tag=TAG))

    WARMING.append(in_background("warming-images", warm))


def build(export_dir: Path) -> tuple[dict[str, str], float]:
    """Both images from ``export_dir``; their names and the seconds it took, the wait for the
    warm-up included."""
    start = time.monotonic()
    for warming in WARMING:
        warming.join()
    with BUILDING:
        names = images.build(images.BuildOptions(tag=TAG, export_dir=export_dir))
    return names, time.monotonic() - start


def remove_orphans() -> None:
    """Pods of test sessions that were killed (their process is gone) before they cleaned up."""
    for name in images.podman("pod", "ps", "--format", "{{.Name}}").stdout.split():
        pid = name.removeprefix(POD_PREFIX)
        if name.startswith(POD_PREFIX) and pid.isdigit() and not psutil.pid_exists(int(pid)):
            images.stop(name)
