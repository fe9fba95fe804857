"""The images as the container tests build and run them, and what they measured (helpers for
conftest.py and the test module: a test module never imports another)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from deploy import images

TAG = "test"
"""The tests' tag: a user's `make image` (tag latest) is left alone; both share the layers."""
POD_PREFIX = "petseg-test-"
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


def build(export_dir: Path) -> tuple[dict[str, str], float]:
    """Both images from ``export_dir``; their names and the seconds it took."""
    start = time.monotonic()
    names = images.build(images.BuildOptions(tag=TAG, export_dir=export_dir))
    return names, time.monotonic() - start


def remove_orphans() -> None:
    """Pods of test sessions that were killed (their process is gone) before they cleaned up."""
    for name in images.podman("pod", "ps", "--format", "{{.Name}}").stdout.split():
        pid = name.removeprefix(POD_PREFIX)
        if name.startswith(POD_PREFIX) and pid.isdigit() and not psutil.pid_exists(int(pid)):
            images.stop(name)
