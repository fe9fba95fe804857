"""petseg.labelling's parts in-process: the labelling config read, the regions decoded back by
Label Studio's own converter, the task images fetched from one origin only (a real HTTP server
on loopback), and the ML backend's answers to what it refuses. tests/system/test_label_studio.py
runs them all against the real Label Studio."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle

from handler.spec import CLASS_SETS
from petseg.labelling import label_config, regions
from petseg.labelling.backend import Credential, create_backend
from petseg.labelling.label_config import LabelConfigError
from petseg.labelling.task_images import LabelStudio, TaskError
from tests.support.masks import from_polygons, iou

CLASSES = [
    {"id": i, "name": name, "color": [40 * i, 90, 200]}
    for i, name in enumerate(CLASS_SETS["multiclass"]["class_names"])
]
CARD = {"name": "petseg", "version": "1.0", "classes": CLASSES}
BRUSH = label_config.template(CLASSES)


def label_map() -> np.ndarray:
    """A cat, a dog with a hole in it, and background, 60 x 80."""
    labels = np.zeros((60, 80), dtype=np.uint8)
    labels[5:25, 5:30] = 1
    labels[30:55, 40:75] = 2
    labels[38:45, 50:60] = 0
    return labels


def test_the_template_is_read_back_with_every_class_but_background():
    project = label_config.read(BRUSH, CLASSES)
    assert (project.tool, project.region_type) == ("brush", "brushlabels")
    assert (project.from_name, project.to_name, project.image_key) == ("tag", "image", "image")
    assert project.labels == {1: "cat", 2: "dog"}
    polygons = label_config.read(label_config.template(CLASSES, "polygon"), CLASSES)
    assert polygons.tool == "polygon" and polygons.region_type == "polygonlabels"


def test_a_project_s_own_config_matches_labels_by_name_in_any_case_and_keeps_its_names():
    config = """<View><Image name="photo" value="$url"/>
      <BrushLabels name="pets" toName="photo">
        <Label value="Cat"/><Label value="bird"/>
      </BrushLabels>
    </View>"""
    project = label_config.read(config, CLASSES)
    assert (project.from_name, project.to_name, project.image_key) == ("pets", "photo", "url")
    assert project.labels == {1: "Cat"}  # no dog label: no dog regions; birds left to people


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ("", "empty"),
        ("<View><Image", "not XML"),
        ('<View><Image name="i" value="$i"/></View>', "no <BrushLabels> or <PolygonLabels>"),
        (
            '<View><BrushLabels name="t" toName="nowhere">'
            '<Label value="cat"/></BrushLabels></View>',
            "which is no <Image> tag",
        ),
        (
            '<View><Image name="i" value="$i"/><BrushLabels name="t" toName="i">'
            '<Label value="rose"/></BrushLabels></View>',
            "none of the model's classes",
        ),
    ],
)
def test_a_config_petseg_cannot_fill_is_refused_with_the_reason(config, says):
    with pytest.raises(LabelConfigError, match=says):
        label_config.read(config, CLASSES)


def test_brush_regions_decode_with_label_studio_s_converter_to_the_very_mask():
    labels = label_map()
    found = regions.results(labels, label_config.read(BRUSH, CLASSES))
    assert [r["value"]["brushlabels"] for r in found] == [["cat"], ["dog"]]
    for region in found:
        assert (region["original_height"], region["original_width"]) == labels.shape
        assert region["type"] == "brushlabels" and region["value"]["format"] == "rle"
        alpha = decode_rle(region["value"]["rle"]).reshape(60, 80, 4)[:, :, 3] > 0
        class_id = {"cat": 1, "dog": 2}[region["value"]["brushlabels"][0]]
        assert np.array_equal(alpha, labels == class_id)


def test_a_class_that_is_not_there_gets_no_region():
    labels = np.zeros((20, 20), dtype=np.uint8)
    labels[2:8, 2:8] = 2
    found = regions.results(labels, label_config.read(BRUSH, CLASSES))
    assert [r["value"]["brushlabels"] for r in found] == [["dog"]]
    assert regions.results(np.zeros((20, 20), np.uint8), label_config.read(BRUSH, CLASSES)) == []


def test_polygon_regions_are_outer_rings_in_percent_of_the_photo():
    labels = label_map()
    project = label_config.read(label_config.template(CLASSES, "polygon"), CLASSES)
    found = regions.results(labels, project, tolerance=0)
    assert {r["value"]["polygonlabels"][0] for r in found} == {"cat", "dog"}
    for region in found:
        points = np.asarray(region["value"]["points"])
        assert points.min() >= 0 and points.max() <= 100 and region["value"]["closed"]
        pixels = points * [80 / 100, 60 / 100]
        class_id = {"cat": 1, "dog": 2}[region["value"]["polygonlabels"][0]]
        filled = from_polygons([[pixels]], 60, 80)
        # a Label Studio polygon has no holes: the dog's outline covers its hole too
        assert np.all(filled[labels == class_id]) and iou(filled, labels == class_id) > 0.85


# -- task images: one origin, no redirects, a size limit, the token's two kinds --------------------
class Recorder(BaseHTTPRequestHandler):
    """Answers by path, and records each request's path and Authorization header."""

    seen: list[tuple[str, str]]

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Authorization", "")))
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
        elif self.path.startswith("/data/upload/"):
            body = b"x" * (2000 if "big" in self.path else 100)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))
        self.server.seen.append((self.path, body.get("refresh", "")))
        answer = json.dumps({"access": jwt({"token_type": "access", "exp": time.time() + 300})})
        self.send_response(200 if body.get("refresh") == REFRESH else 401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(answer.encode())

    def log_message(self, *args: object) -> None:
        pass


def jwt(claims: dict) -> str:
    encoded = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJIUzI1NiJ9.{encoded}.c2lnbmF0dXJl"


REFRESH = jwt({"token_type": "refresh", "exp": time.time() + 86400})


@pytest.fixture
def studio() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    httpd.seen = []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def origin(httpd: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}"


@pytest.mark.parametrize(
    "reference",
    [
        "http://169.254.169.254/latest/meta-data/",
        "//evil.example/x.jpg",
        "https://127.0.0.1:{port}/data/upload/1/a.jpg",
        "http://127.0.0.1:1/data/upload/1/a.jpg",
        "http://user:pw@127.0.0.1:{port}/data/upload/1/a.jpg",
        "file:///etc/passwd",
    ],
)
def test_an_image_anywhere_but_the_configured_label_studio_is_refused_unfetched(studio, reference):
    client = LabelStudio(origin(studio), "legacy-token", max_bytes=1000)
    with pytest.raises(TaskError, match="not on the configured Label Studio"):
        client.image(reference.format(port=studio.server_address[1]))
    assert studio.seen == []


def test_a_relative_image_is_fetched_from_label_studio_with_its_legacy_token(studio):
    client = LabelStudio(origin(studio), "legacy-token", max_bytes=1000)
    assert client.image("/data/upload/1/a.jpg") == b"x" * 100
    assert studio.seen == [("/data/upload/1/a.jpg", "Token legacy-token")]


def test_a_personal_access_token_is_exchanged_once_and_sent_as_bearer(studio):
    client = LabelStudio(origin(studio), REFRESH, max_bytes=1000)
    client.image("/data/upload/1/a.jpg")
    client.image("/data/upload/1/b.jpg")
    refreshes = [seen for seen in studio.seen if seen[0] == "/api/token/refresh/"]
    assert refreshes == [("/api/token/refresh/", REFRESH)]  # the access token is reused
    assert all(auth.startswith("Bearer ey") for path, auth in studio.seen[1:])


def test_a_refused_token_says_which_variable_to_fix(studio):
    wrong = jwt({"token_type": "refresh", "exp": time.time() + 60})
    with pytest.raises(TaskError, match="LABEL_STUDIO_API_KEY"):
        LabelStudio(origin(studio), wrong, max_bytes=1000).image("/data/upload/1/a.jpg")


@pytest.mark.parametrize(
    ("reference", "says"),
    [
        ("/redirect/a.jpg", "redirected .* not followed"),
        ("/data/upload/1/big.jpg", "over the 0 MB upload limit"),
        ("/data/upload/../../gone.jpg", "HTTP 404"),
        ("", "no image URL"),
    ],
)
def test_a_redirect_an_oversized_image_or_a_404_is_the_task_s_error(studio, reference, says):
    client = LabelStudio(origin(studio), "legacy-token", max_bytes=1000)
    with pytest.raises(TaskError, match=says):
        client.image(reference)
    assert not any(path.startswith("/latest") for path, _ in studio.seen)


def test_label_studio_down_is_the_task_s_error_not_a_crash():
    client = LabelStudio("http://127.0.0.1:1", "legacy-token", max_bytes=1000, timeout_s=2)
    with pytest.raises(TaskError, match="cannot reach Label Studio"):
        client.image("/data/upload/1/a.jpg")


# -- the ML backend's HTTP contract ---------------------------------------------------------------
class Card:
    """A target that only knows its model card: the requests below are refused before a photo
    would be segmented (tests/system/test_label_studio.py segments them through TorchServe)."""

    where = "nowhere"

    def model_card(self) -> dict:
        return CARD

    def segment(self, *args: object) -> None:
        raise AssertionError("a refused request reached the model")


@pytest.fixture
def backend(studio):
    app = create_backend(Card(), LabelStudio(origin(studio), "t", 1000), Credential("ls", "secret"))
    return app.test_client()


AUTH = {"Authorization": "Basic " + base64.b64encode(b"ls:secret").decode()}


def test_health_is_open_and_everything_else_needs_the_password(backend):
    health = backend.get("/health")
    assert health.status_code == 200 and health.json["model_version"] == "1.0"
    for header in ({}, {"Authorization": "Basic " + base64.b64encode(b"ls:guess").decode()}):
        refused = backend.post("/predict", json={"tasks": [{}]}, headers=header)
        assert refused.status_code == 401 and "basic-auth" in refused.json["error"]
        assert refused.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"not json", 400, "JSON object"),
        ({"tasks": []}, 400, "non-empty list"),
        ({"tasks": [{}] * 1001, "label_config": BRUSH}, 413, "at most 1000"),
        ({"tasks": [{}], "label_config": "<View/>"}, 422, "no <BrushLabels>"),
    ],
)
def test_a_request_it_cannot_answer_at_all_is_a_4xx_in_words(backend, body, status, says):
    sent = {"data": body} if isinstance(body, bytes) else {"json": body}
    answer = backend.post("/predict", headers=AUTH, **sent)
    assert answer.status_code == status and says in answer.json["error"]


def test_a_task_without_its_image_field_gets_an_empty_prediction_and_the_others_still_run(
    backend, studio
):
    tasks = [{"id": 7, "data": {"photo": "x"}}, {"id": 8, "data": {"image": "/nowhere.jpg"}}]
    answer = backend.post("/predict", json={"tasks": tasks, "label_config": BRUSH}, headers=AUTH)
    assert answer.status_code == 200
    first, second = answer.json["results"]
    assert first["result"] == [] and "task 7" in first["error"] and "'image'" in first["error"]
    assert second["result"] == [] and "task 8" in second["error"] and "404" in second["error"]
    assert first["model_version"] == "1.0"


def test_setup_answers_the_model_version_for_a_config_it_can_fill(backend):
    answer = backend.post("/setup", json={"schema": BRUSH, "project": "1.0"}, headers=AUTH)
    assert answer.status_code == 200 and answer.json == {"model_version": "1.0"}
