"""The web app's proxy in front of a real TorchServe (Flask's test client for the app)."""

from __future__ import annotations

import io
import json
import logging
import re

import numpy as np
import pytest
from PIL import Image

from frontend_server import create_app
from handler.protocol import MODEL_VERSION_HEADER, OUTPUTS, REQUEST_ID_HEADER
from petseg.serving.demo import web_settings
from tests.support import images
from tests.support.logs import wait_for_line
from tests.support.masks import from_polygons, from_rle, iou
from tests.support.web import sample, upload


@pytest.fixture
def client(server):
    return create_app(web_settings(server)).test_client()


def test_segment_through_the_proxy(client):
    response = upload(client, images.jpeg(300, 200))
    assert response.status_code == 200
    result = response.get_json()
    assert (result["width"], result["height"]) == (300, 200)
    mask = upload(client, images.png(64, 48), "a.png", output="mask")
    assert mask.content_type == "image/png"
    assert Image.open(io.BytesIO(mask.data)).size == (64, 48)


def test_answers_name_the_model_version_that_made_them(client):
    """A mask or an overlay has no JSON to say which version made it: the header does, on the
    handler's errors too; the proxy's own errors, which no model saw, carry none."""
    for output in OUTPUTS:
        response = upload(client, images.jpeg(), output=output)
        assert response.status_code == 200 and response.headers[MODEL_VERSION_HEADER] == "1.0"
    refused = upload(client, b"junk")
    assert refused.status_code == 415 and refused.headers[MODEL_VERSION_HEADER] == "1.0"
    assert MODEL_VERSION_HEADER not in upload(client, b"x", field="wrong").headers


def test_health_reports_ready_workers(client):
    health = client.get("/api/health")
    assert health.status_code == 200 and health.get_json()["ready_workers"] >= 1


def test_a_stale_key_in_the_key_file_is_renewed_and_retried(client, server):
    stale = server.key_file.read_text()
    server.client().rotate("inference")
    server.key_file.write_text(stale)  # the file still holds the key TorchServe now refuses
    response = upload(client, images.jpeg())
    assert response.status_code == 200
    assert server.keys()["inference"] != json.loads(stale)["inference"]["key"]
    renewals = sample(client.application, "petseg_proxy_token_renewals_total", key="inference")
    assert renewals == 1


def test_one_upload_can_be_followed_from_the_proxy_to_the_handler(client, server, caplog):
    with caplog.at_level(logging.INFO, logger="frontend_server.access"):
        response = client.post(
            "/api/segment",
            data={"file": (io.BytesIO(images.jpeg(90, 60)), "cat.jpg")},
            headers={REQUEST_ID_HEADER: "follow-me-1"},
        )
    assert response.status_code == 200 and response.headers[REQUEST_ID_HEADER] == "follow-me-1"
    (proxy_line,) = [r.getMessage() for r in caplog.records if "follow-me-1" in r.getMessage()]
    assert re.fullmatch(
        r"follow-me-1 POST api.segment 200 [\d.]+ ms ok version=1.0 torchserve_id=[-0-9a-f]{36}",
        proxy_line,
    )
    logs = server.workdir / "logs"
    wait_for_line(logs / "access_log.log", "/predictions/petseg?request_id=follow-me-1 ")
    wait_for_line(logs / "model_log.log", "request follow-me-1, petseg 1.0: json of 90x60")


def test_tokens_never_reach_the_client(client, server):
    keys = set(server.keys().values())
    for response in (
        upload(client, images.jpeg()),
        upload(client, b"junk"),
        client.get("/api/health"),
        client.get("/"),
    ):
        assert not any(key.encode() in response.data for key in keys)


def test_mask_formats_through_the_proxy(client):
    photo = images.jpeg(150, 100)
    labels = np.asarray(Image.open(io.BytesIO(upload(client, photo, output="mask").data)))
    rle = upload(client, photo, output="rle")
    assert rle.status_code == 200 and rle.content_type == OUTPUTS["rle"]
    assert rle.get_json()["masks"], "the tiny model finds pets in this photo"
    for entry in rle.get_json()["masks"]:
        assert np.array_equal(from_rle(entry["rle"]), labels == entry["id"])
    shapes = client.post(
        "/api/segment?output=polygons&tolerance=1.5",
        data={"file": (io.BytesIO(photo), "cat.jpg")},
        content_type="multipart/form-data",
    ).get_json()
    assert shapes["tolerance"] == 1.5
    for feature in shapes["features"]:
        filled = from_polygons(feature["geometry"]["coordinates"], 100, 150)
        assert iou(filled, labels == feature["properties"]["id"]) > 0.8
    bad = client.post(
        "/api/segment?output=polygons&tolerance=-3",
        data={"file": (io.BytesIO(photo), "cat.jpg")},
        content_type="multipart/form-data",
    )
    assert bad.status_code == 400 and "tolerance" in bad.get_json()["message"]


def test_the_model_card_says_what_the_model_is_and_nothing_more(client, server):
    response = client.get("/api/model")
    assert response.status_code == 200
    card = response.get_json()
    assert card["name"] == "petseg" and card["version"] == card["default_version"] == "1.0"
    assert card["versions"] == ["1.0"]
    assert [(c["name"], c["color"]) for c in card["classes"]][1] == ("cat", [255, 0, 0])
    assert card["input_size"] == 64 and card["precision"] in ("bfloat16", "float32")
    assert card["training_data"]["kind"] == "synthetic"
    assert card["training_data"]["images"]["train"] > 0
    assert set(card["evaluation"]) == set() or "dataset" in card["evaluation"]
    text = response.get_data(as_text=True)
    assert "workers" not in text and str(server.workdir) not in text and "/tmp" not in text


def test_versions_are_checked_against_what_torchserve_holds(client):
    assert upload_to(client, "?version=1.0").status_code == 200
    for version in ("9.9", "../../models", "1.0/../x"):
        response = upload_to(client, f"?version={version}")
        assert response.status_code == 404 and "has no version" in response.get_json()["message"]
    assert client.get("/api/model?version=9.9").status_code == 404


def upload_to(client, query: str):
    data = {"file": (io.BytesIO(images.jpeg(64, 48)), "cat.jpg")}
    return client.post(f"/api/segment{query}", data=data, content_type="multipart/form-data")
