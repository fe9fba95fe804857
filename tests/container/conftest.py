"""The two images as the container tests use them: built once per session from the tiny model
(layers reused from earlier runs: only the archive's change), run in a pod on a free port on
127.0.0.1, removed at the end even when a test fails. What they cost is printed at the end
(tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy import images
from petseg.serving.launcher import free_ports
from tests.container.support import MEASURED, POD_PREFIX, TAG, Pod, build, remove_orphans
from tests.support import traffic


@pytest.fixture(scope="session")
def built_images(tiny_export: Path) -> Iterator[dict[str, str]]:
    """{folder: image name}; untagged leftovers of earlier builds are pruned at the end."""
    if not shutil.which("podman"):
        pytest.fail("podman is missing: run `make containers`")
    names, seconds = build(tiny_export)
    MEASURED["build"] = f"{seconds:.0f} s"
    for folder, name in names.items():
        MEASURED[f"{folder} image"] = f"{int(images.image_field(name, 'Size')) / 1e6:.0f} MB"
    yield names
    images.podman("image", "prune", "--force", timeout=300)


@pytest.fixture(scope="module")
def pod(built_images: dict[str, str]) -> Iterator[Pod]:
    remove_orphans()
    name = f"{POD_PREFIX}{os.getpid()}"
    port = free_ports(1)[0]
    traffic.name_port(port, "web container")
    start = time.monotonic()
    try:
        url = images.run(name, TAG, port, timeout=300)
        MEASURED["ready after"] = f"{time.monotonic() - start:.0f} s"
        yield Pod(name, url)
    finally:
        images.stop(name)
