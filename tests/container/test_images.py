"""petseg's two images built and run for real with podman, reached only through the port their
pod publishes on 127.0.0.1 and through podman itself (exec, top, healthcheck, stop).

The first test builds them (minutes on a fresh machine, seconds when the layers are there) and
starts the pod; the last one stops it.
"""

from __future__ import annotations

import json
import time
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
import requests

from deploy import images
from handler.protocol import Ports
from tests.container.support import MEASURED, Pod, build
from tests.support.images import from_base64, jpeg

pytestmark = pytest.mark.timeout(900)  # a cold build of the model server's torch layers

PHOTO_SIZE = (3000, 2000)
"""A real camera's size: 6 MP."""


def podman_lines(*args: str) -> list[str]:
    return images.podman(*args).stdout.splitlines()


def listening(container: str) -> set[tuple[IPv4Address | IPv6Address, int]]:
    """(address, port) of the container's listening TCP sockets, from /proc/net/tcp and tcp6
    (Java listens on IPv6 sockets: an IPv4-mapped address counts as its IPv4 one)."""
    found = set()
    for table in ("tcp", "tcp6"):
        for row in podman_lines("exec", container, "cat", f"/proc/net/{table}")[1:]:
            local, state = row.split()[1], row.split()[3]
            if state == "0A":  # LISTEN
                hexaddress, port = local.split(":")
                words = bytes.fromhex(hexaddress)  # 32-bit words in host (little-endian) order
                address = ip_address(b"".join(words[i : i + 4][::-1] for i in range(0, 16, 4)))
                found.add((getattr(address, "ipv4_mapped", None) or address, int(port, 16)))
    return found


def test_a_photo_through_the_web_container_gets_a_mask_of_its_size(pod: Pod):
    response = requests.post(
        pod.url + "api/segment",
        files={"file": ("photo.jpg", jpeg(*PHOTO_SIZE), "image/jpeg")},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["width"], answer["height"]) == PHOTO_SIZE
    assert from_base64(answer["mask_png"]).size == PHOTO_SIZE


@pytest.mark.parametrize(
    ("upload", "status"),
    [
        ({"files": {"file": ("notes.txt", b"not an image", "text/plain")}}, 415),
        ({"data": {"comment": "no file at all"}}, 400),
    ],
    ids=["text", "no-file"],
)
def test_a_bad_upload_gets_its_4xx_json_error(pod: Pod, upload: dict, status: int):
    response = requests.post(pod.url + "api/segment", timeout=60, **upload)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["message"]


def test_only_the_page_is_published_and_management_listens_on_loopback(pod: Pod):
    inspect = ["pod", "inspect", "--format", "{{json .InfraConfig.PortBindings}}", pod.name]
    port = pod.url.rsplit(":", 1)[1].strip("/")
    assert json.loads(images.podman(*inspect).stdout) == {
        f"{images.WEB_PORT}/tcp": [{"HostIp": "127.0.0.1", "HostPort": port}]
    }
    sockets = listening(pod.server)
    everywhere = {port for address, port in sockets if address.is_unspecified}
    assert {Ports.inference, Ports.metrics} <= everywhere
    management = [address for address, port in sockets if port == Ports.management]
    assert management and all(address.is_loopback for address in management)


def test_every_process_runs_as_the_images_unprivileged_user(pod: Pod, built_images):
    for container, folder in ((pod.server, images.MODEL_SERVER), (pod.web, images.WEB)):
        uid = images.image_field(built_images[folder], "Config.User").split(":")[0]
        assert uid.isdigit() and int(uid) > 0
        rows = [row.split(None, 1) for row in podman_lines("top", container, "huser", "args")[1:]]
        assert {user for user, _ in rows} == {uid}, rows
    server = " ".join(podman_lines("top", pod.server, "args"))
    assert "org.pytorch.serve.ModelServer" in server and "model_service_worker.py" in server


def test_the_health_checks_follow_the_models_ready_workers(pod: Pod):
    def healthy(container: str) -> bool:
        return images.podman("healthcheck", "run", container, check=False).returncode == 0

    assert healthy(pod.server) and healthy(pod.web)
    # The `petseg` command inside the image: management is reachable only from the pod.
    petseg = ["exec", pod.server, "petseg", "models"]
    workers = len(json.loads(images.podman(*petseg, "describe").stdout)[0]["workers"])
    images.podman(*petseg, "scale", "0")  # not waited for (TorchServe would answer 500)
    try:
        assert not healthy(pod.server) and not healthy(pod.web)
    finally:
        images.podman(*petseg, "scale", str(workers), timeout=300)
    assert healthy(pod.server) and healthy(pod.web)


def test_the_web_image_is_small_and_carries_no_torch(built_images):
    web = built_images[images.WEB]
    assert int(images.image_field(web, "Size")) < 300e6
    probe = "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in sys.argv[1:]))"
    run = ["run", "--rm", "--entrypoint", "/opt/venv/bin/python", web, "-c", probe]
    assert images.podman(*run, "torch", "numpy", "PIL", check=False).returncode == 0


def test_a_rebuild_with_nothing_changed_reuses_every_layer(built_images, tiny_export):
    before = [images.image_field(name, "Id") for name in built_images.values()]
    names, seconds = build(tiny_export)
    MEASURED["rebuild"] = f"{seconds:.0f} s"
    assert names == built_images
    assert [images.image_field(name, "Id") for name in names.values()] == before
    assert seconds < 120


def test_podman_stop_ends_each_container_within_15_s_with_sigterm(pod: Pod):
    for container in (pod.web, pod.server):
        start = time.monotonic()
        images.podman("stop", container, timeout=60)
        seconds = time.monotonic() - start
        MEASURED[f"stop {container.removeprefix(pod.name + '-')}"] = f"{seconds:.1f} s"
        code = images.podman("inspect", "--format", "{{.State.ExitCode}}", container).stdout
        assert seconds < 15
        assert int(code) == 128 + 15, "ended by SIGTERM, not by the SIGKILL after the timeout"
