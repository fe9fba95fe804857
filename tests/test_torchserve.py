"""Against a real TorchServe (Java frontend + Python workers) serving a tiny trained model."""

from __future__ import annotations

import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import yaml
from PIL import Image

from handler.archive import MODEL_CONFIG, build_archive
from handler.server import Instance, ready_workers
from tests import images

pytestmark = pytest.mark.slow


def infer(server: Instance, body: bytes | None, key: str | None = "inference", **kwargs):
    headers = kwargs.pop("headers", {})
    if key:
        headers["Authorization"] = f"Bearer {server.keys()[key]}"
    if body is not None:
        kwargs["data"] = body
    url = server.url("inference", "/predictions/petseg")
    return requests.post(url, headers=headers, timeout=60, **kwargs)


def manage(server: Instance, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {server.keys()['management']}"}
    return requests.request(
        method, server.url("management", path), headers=headers, timeout=120, **kwargs
    )


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
    for name in (
        "ts_inference_requests_total",
        "PetsegInferenceTime",
        "PetsegBatchSize",
        "PetsegPreprocessTime",
        "PetsegPostprocessTime",
        "PetsegRejectedRequests",
    ):
        assert name in text, f"{name} missing from /metrics"


def test_management_versions_scaling_and_unregister(server, tiny_export):
    listed = manage(server, "GET", "/models").json()
    assert [m["modelName"] for m in listed["models"]] == ["petseg"]
    described = manage(server, "GET", "/models/petseg").json()[0]
    shipped = yaml.safe_load(MODEL_CONFIG.read_text())
    assert described["batchSize"] == shipped["batchSize"]
    assert described["maxBatchDelay"] == shipped["maxBatchDelay"]

    build_archive(tiny_export, server.model_store, name="petseg-v2", version="2.0")
    response = manage(
        server,
        "POST",
        "/models",
        params={
            "url": "petseg-v2.mar",
            "model_name": "petseg",
            "initial_workers": 1,
            "synchronous": "true",
        },
    )
    assert response.status_code == 200, response.text
    versions = {m["modelVersion"] for m in manage(server, "GET", "/models/petseg/all").json()}
    assert versions == {"1.0", "2.0"}
    assert manage(server, "PUT", "/models/petseg/2.0/set-default").status_code == 200
    assert infer(server, images.jpeg()).json()["model"]["version"] == "2.0"

    scaled = manage(
        server, "PUT", "/models/petseg/2.0", params={"min_worker": 2, "synchronous": "true"}
    )
    assert scaled.status_code == 200, scaled.text
    workers = manage(server, "GET", "/models/petseg/2.0").json()[0]["workers"]
    assert len(workers) == 2

    assert manage(server, "PUT", "/models/petseg/1.0/set-default").status_code == 200
    assert manage(server, "DELETE", "/models/petseg/2.0").status_code == 200
    versions = {m["modelVersion"] for m in manage(server, "GET", "/models/petseg/all").json()}
    assert versions == {"1.0"}
    assert ready_workers(server) >= 1


def test_registering_from_outside_the_model_store_is_refused(server, tmp_path):
    for url in (
        "https://example.com/evil.mar",
        f"file://{tmp_path}/evil.mar",
        "file:///etc/passwd",
    ):
        response = manage(server, "POST", "/models", params={"url": url})
        assert response.status_code in (400, 403, 404), (url, response.text)
    assert [m["modelName"] for m in manage(server, "GET", "/models").json()["models"]] == ["petseg"]


def test_a_worker_survives_a_burst_of_bad_input(server):
    before = manage(server, "GET", "/models/petseg").json()[0]["workers"]
    for data in (b"", b"x" * 1000, images.truncated_jpeg(), images.png_with_bad_crc()):
        assert 400 <= infer(server, data).status_code < 500
    time.sleep(0.5)
    after = manage(server, "GET", "/models/petseg").json()[0]["workers"]
    assert [w["pid"] for w in after] == [w["pid"] for w in before]
    assert json.dumps(infer(server, images.jpeg()).json()["width"]) == "160"


def test_manage_helper_lists_predicts_and_rotates_keys(server, tmp_path):
    from handler import manage

    def call(*argv):
        return manage.run(manage.get_args_parser().parse_args(list(argv)), server)

    status, body = call("list")
    assert status == 200 and json.loads(body)["models"][0]["modelName"] == "petseg"
    image = tmp_path / "cat.jpg"
    image.write_bytes(images.jpeg(100, 80))
    status, body = call("predict", str(image), "--output", "mask")
    assert status == 200 and Image.open(io.BytesIO(body)).size == (100, 80)

    old = server.keys()["inference"]
    status, body = call("rotate", "inference")
    assert status == 200, body
    assert server.keys()["inference"] != old
    assert infer(server, images.jpeg()).status_code == 200
    stale = requests.post(
        server.url("inference", "/predictions/petseg"),
        data=images.jpeg(),
        headers={"Authorization": f"Bearer {old}"},
        timeout=30,
    )
    assert stale.status_code == 400
