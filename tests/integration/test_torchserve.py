"""Against a real TorchServe (Java frontend + Python workers) serving a tiny trained model."""

from __future__ import annotations

import io
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import yaml
from PIL import Image

from handler.metrics import DECLARED
from handler.protocol import MODEL_VERSION_HEADER, OUTPUTS
from petseg.packaging.archive import MODEL_CONFIG, build_archive
from petseg.serving.launcher import Instance
from tests.support import images
from tests.support.logs import wait_for_line
from tests.support.masks import from_polygons, from_rle
from torchserve_client import TorchServeError


def infer(server: Instance, body: bytes | None, key: str | None = "inference", **kwargs):
    headers = kwargs.pop("headers", {})
    if key:
        headers["Authorization"] = f"Bearer {server.keys()[key]}"
    if body is not None:
        kwargs["data"] = body
    url = server.url("inference", "/predictions/petseg")
    return requests.post(url, headers=headers, timeout=60, **kwargs)


def mask_of(result: dict) -> Image.Image:
    return images.from_base64(result["mask_png"])


def test_inference_returns_a_mask_of_the_original_size(server):
    response = infer(server, images.jpeg(500, 375), headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["width"], result["height"]) == (500, 375)
    assert mask_of(result).size == (500, 375) and mask_of(result).mode == "P"


def test_multipart_upload_and_exif_orientation(server):
    response = infer(server, None, files={"data": ("rot.jpg", images.exif_rotated_jpeg(160, 120))})
    assert response.status_code == 200, response.text
    assert mask_of(response.json()).size == (120, 160)


@pytest.mark.parametrize(
    ("accept", "kind", "fmt"),
    [("image/png", "image/png", "PNG"), ("image/jpeg", "image/jpeg", "JPEG")],
)
def test_binary_answers_by_accept_header(server, accept, kind, fmt):
    response = infer(server, images.png(90, 60), headers={"Accept": accept})
    assert response.status_code == 200 and response.headers["content-type"] == kind
    image = Image.open(io.BytesIO(response.content))
    assert image.format == fmt and image.size == (90, 60)


def test_output_form_field_selects_the_mask(server):
    upload = {"data": ("a.png", images.png(90, 60)), "output": (None, "mask")}
    response = infer(server, None, files=upload)
    assert response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (90, 60)


def test_concurrent_requests_are_batched_and_bad_ones_stay_alone(server):
    uploads = [images.jpeg(120 + 8 * i, 90) for i in range(7)] + [b"not an image"]
    with ThreadPoolExecutor(len(uploads)) as pool:
        responses = list(pool.map(lambda d: infer(server, d), uploads))
    assert [r.status_code for r in responses] == [200] * 7 + [415]
    results = [r.json() for r in responses[:7]]
    assert [mask_of(r).size for r in results] == [(120 + 8 * i, 90) for i in range(7)]
    assert max(r["batch_size"] for r in results) > 1, "no batch ever held more than one request"


def test_requests_without_the_right_token_are_refused(server):
    for key in (None, "management"):
        response = infer(server, images.jpeg(), key=key)
        assert response.status_code == 400 and "InvalidKeyException" in response.text
    response = requests.get(server.url("management", "/models"), timeout=10)
    assert response.status_code == 400 and "InvalidKeyException" in response.text
    response = requests.get(server.url("inference", "/ping"), timeout=10)
    assert response.status_code == 400


def test_metrics_show_torchserve_and_handler_metrics(server):
    infer(server, images.jpeg())
    infer(server, b"")
    text = requests.get(server.url("metrics", "/metrics"), timeout=10).text
    for name in ("ts_inference_requests_total", *DECLARED):
        assert name in text, f"{name} missing from /metrics"
    # dimensions become labels: the model's name and version on each handler metric
    labels = r'\{ModelName="petseg",ModelVersion="1.0",Level="Model"'
    assert re.search(rf'PetsegForegroundFraction_bucket{labels},Hostname="[^"]+",le="0.005"', text)
    assert re.search(rf'PetsegClassPresent{labels},Class="cat",', text)


def test_a_request_id_reaches_torchserve_s_access_log_and_the_handler_s_log(server):
    logs = server.workdir / "logs"
    response = server.client().predict(images.jpeg(), "image/jpeg", request_id="trace-me-42")
    assert response.status_code == 200 and response.headers[MODEL_VERSION_HEADER] == "1.0"
    line = wait_for_line(logs / "access_log.log", "request_id=trace-me-42")
    assert '"POST /predictions/petseg?request_id=trace-me-42 HTTP/1.1" 200' in line
    wait_for_line(logs / "model_log.log", "request trace-me-42, petseg 1.0: json of 160x120")
    # Without an id of the caller's, the handler logs TorchServe's own (its answer's header).
    anonymous = infer(server, images.jpeg()).headers["x-request-id"]
    wait_for_line(logs / "model_log.log", f"request {anonymous}, petseg 1.0")


def test_management_versions_scaling_and_unregister(server, tiny_export):
    client = server.client()
    assert [m["modelName"] for m in client.list_models()["models"]] == ["petseg"]
    described = client.describe("1.0")[0]
    shipped = yaml.safe_load(MODEL_CONFIG.read_text())
    assert described["batchSize"] == shipped["batchSize"]
    assert described["maxBatchDelay"] == shipped["maxBatchDelay"]

    build_archive(tiny_export, server.model_store, name="petseg-v2", version="2.0")
    client.register("petseg-v2.mar", workers=1)
    assert {m["modelVersion"] for m in client.describe()} == {"1.0", "2.0"}
    assert len(client.workers("2.0")) == 1, "the archive's own worker count overrode the call's"
    client.set_default("2.0")
    assert infer(server, images.jpeg()).json()["model"]["version"] == "2.0"

    client.scale(2, version="2.0")
    assert len(client.workers("2.0")) == 2

    client.set_default("1.0")
    client.unregister("2.0")
    assert {m["modelVersion"] for m in client.describe()} == {"1.0"}
    assert client.health().ready_workers >= 1


def test_management_refusals_are_errors_with_torchserve_s_message(server):
    client = server.client()
    with pytest.raises(TorchServeError, match="HTTP 404") as refused:
        client.describe("9.9")
    assert refused.value.status == 404


def test_registering_from_outside_the_model_store_is_refused(server, tmp_path):
    for url in (
        "https://example.com/evil.mar",
        f"file://{tmp_path}/evil.mar",
        "file:///etc/passwd",
    ):
        with pytest.raises(TorchServeError) as refused:
            server.client().register(url)
        assert refused.value.status in (400, 403, 404), (url, refused.value.message)
    assert [m["modelName"] for m in server.client().list_models()["models"]] == ["petseg"]


def test_a_worker_survives_a_burst_of_bad_input(server):
    before = server.client().workers()
    for data in (b"", b"x" * 1000, images.truncated_jpeg(), images.png_with_bad_crc()):
        assert 400 <= infer(server, data).status_code < 500
    time.sleep(0.5)
    after = server.client().workers()
    assert [w["pid"] for w in after] == [w["pid"] for w in before]
    assert json.dumps(infer(server, images.jpeg()).json()["width"]) == "160"


def test_rle_and_polygons_by_accept_header_and_form_field(server):
    photo = images.jpeg(150, 100)
    labels = np.asarray(
        Image.open(io.BytesIO(infer(server, photo, headers={"Accept": "image/png"}).content))
    )
    rle = infer(server, photo, headers={"Accept": OUTPUTS["rle"]})
    assert rle.headers["content-type"] == OUTPUTS["rle"]
    assert rle.json()["masks"], "the tiny model finds pets in this photo"
    for entry in rle.json()["masks"]:
        assert np.array_equal(from_rle(entry["rle"]), labels == entry["id"])
    form = {"data": ("cat.jpg", photo), "output": (None, "polygons"), "tolerance": (None, "0")}
    shapes = infer(server, None, files=form)
    assert shapes.headers["content-type"] == OUTPUTS["polygons"]
    for feature in shapes.json()["features"]:
        filled = from_polygons(feature["geometry"]["coordinates"], 100, 150)
        assert np.array_equal(filled, labels == feature["properties"]["id"])
