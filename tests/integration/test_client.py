"""The TorchServe client against a real TorchServe: keys renewed, TorchServe gone."""

from __future__ import annotations

import io
import json

import pytest

from petseg.serving.launcher import Instance, free_ports
from tests.support import images
from torchserve_client import TorchServe, Unreachable


def test_a_refused_management_key_is_renewed_once(server: Instance):
    stale = server.key_file.read_text()
    client = server.client()
    client.rotate("management")
    server.key_file.write_text(stale)  # TorchServe now refuses the management key on file
    assert client.list_models()["models"][0]["modelName"] == "petseg"
    assert server.keys()["management"] != json.loads(stale)["management"]["key"]
    assert client.health().ready_workers >= 1


def test_a_streamed_upload_is_sent_again_after_a_renewal(server: Instance):
    stale = server.key_file.read_text()
    client = server.client()
    client.rotate("inference")
    server.key_file.write_text(stale)
    answer = client.predict(io.BytesIO(images.jpeg(90, 60)), "image/jpeg", "mask")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"


def test_a_torchserve_that_is_not_there(server: Instance):
    port = free_ports(1)[0]
    client = TorchServe(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}", server.key_file)
    health = client.health()
    assert not health.reachable and "not reachable" in health.detail
    with pytest.raises(Unreachable, match="not reachable"):
        client.predict(images.jpeg())
