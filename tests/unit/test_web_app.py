"""The web app alone (Flask's test client): pages, input checks, TorchServe down or slow."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from frontend_server import DEFAULTS, create_app
from tests.support import images
from tests.support.web import (
    SECURITY_HEADERS,
    offline_config,
    security_headers,
    upload,
)


@pytest.fixture
def offline_client(tmp_path):
    """An app whose TorchServe is down: nothing listens, no key file."""
    return create_app(offline_config(tmp_path, MAX_UPLOAD_MB=0.05)).test_client()


def test_page_and_static_files_are_served(offline_client):
    with offline_client.get("/") as page:
        assert page.status_code == 200 and b'<input id="file" type="file"' in page.data
    for path in ("/static/style.css", "/static/script.js", "/static/samples/cat.jpg"):
        with offline_client.get(path) as response:  # closing releases the sent file
            assert response.status_code == 200, path


@pytest.mark.parametrize(
    ("status", "request_"),
    [
        (200, lambda client: client.get("/")),
        (200, lambda client: client.get("/static/style.css")),
        (200, lambda client: client.get("/static/samples/cat.jpg")),
        (503, lambda client: client.get("/api/health")),
        (503, lambda client: upload(client, images.jpeg())),
        (404, lambda client: client.get("/nope")),
        (405, lambda client: client.get("/api/segment")),
        (400, lambda client: client.post("/api/segment", data={"other": "x"})),
        (413, lambda client: upload(client, b"\xff" * 300_000)),
    ],
    ids=["page", "stylesheet", "picture", "health", "upload-503", "404", "405", "400", "413"],
)
def test_every_answer_carries_the_security_headers(offline_client, status, request_):
    with request_(offline_client) as response:
        assert response.status_code == status
        assert security_headers(response) == SECURITY_HEADERS


def test_missing_file_is_a_400_naming_the_field(offline_client):
    response = offline_client.post(
        "/api/segment", data={"other": "x"}, content_type="multipart/form-data"
    )
    assert response.status_code == 400 and "'file'" in response.get_json()["message"]
    assert upload(offline_client, b"x", field="wrong").status_code == 400


def test_oversized_upload_is_413_before_torchserve(offline_client):
    response = upload(offline_client, b"\xff" * 300_000)
    assert response.status_code == 413
    assert response.get_json()["message"] == "upload too large: the limit is 0.05 MB"


def test_torchserve_down_is_503_with_a_reason(offline_client):
    response = upload(offline_client, images.jpeg())
    assert response.status_code == 503 and "key file" in response.get_json()["message"]
    health = offline_client.get("/api/health")
    assert health.status_code == 503 and health.get_json()["torchserve"] == "down"
    # the public answer names no address or path of the machine
    assert health.get_json()["detail"] == "TorchServe is not reachable"
    assert "127.0.0.1" not in health.get_data(as_text=True) and "/" not in health.json["detail"]


def test_unknown_routes_and_methods_answer_json(offline_client):
    for response in (
        offline_client.get("/nope"),
        offline_client.get("/api/segment"),
        offline_client.get("/models"),
        offline_client.get("/api/../metrics"),
    ):
        assert response.status_code in (404, 405) and "message" in response.get_json()


@pytest.mark.parametrize(
    ("path", "allowed"),
    [("/api/segment", {"POST", "OPTIONS"}), ("/api/health", {"GET", "HEAD", "OPTIONS"})],
)
def test_a_wrong_method_is_told_the_right_ones(offline_client, path, allowed):
    """A 405 names the methods the route answers (RFC 9110), in the JSON errors' form."""
    response = offline_client.delete(path)
    assert response.status_code == 405 and response.content_type == "application/json"
    assert set(response.headers["Allow"].split(", ")) == allowed
    assert response.get_json()["code"] == 405


@pytest.mark.parametrize(
    ("variable", "value", "setting"),
    [
        ("TIMEOUT_S", "2.5", 2.5),
        ("TIMEOUT_S", "60", 60),
        ("MAX_UPLOAD_MB", "0.5", 0.5),
        ("MODEL_NAME", "petseg-next", "petseg-next"),
        ("MODEL_NAME", '"7"', "7"),
        ("KEY_FILE", "/run/petseg/key_file.json", "/run/petseg/key_file.json"),
        ("TORCHSERVE_INFERENCE_URL", "http://[::1]:8080", "http://[::1]:8080"),
        ("METRICS_ADDRESS", "0.0.0.0:5001", "0.0.0.0:5001"),
        ("METRICS_ADDRESS", "", ""),
    ],
)
def test_settings_come_from_prefixed_environment(monkeypatch, variable, value, setting):
    """As the deployments write them (deploy/, petseg.serving.demo.web_environment): JSON where it
    parses, else the plain string; an empty address is none."""
    monkeypatch.setenv(f"PETSEG_{variable}", value)
    config = create_app().config
    assert config[variable] == setting and type(config[variable]) is type(setting)


def test_the_test_config_overrides_the_environment_which_overrides_the_defaults(monkeypatch):
    monkeypatch.setenv("PETSEG_TIMEOUT_S", "2.5")
    monkeypatch.setenv("PETSEG_MODEL_NAME", "from-env")
    config = create_app({"MODEL_NAME": "from-test"}).config
    assert (config["TIMEOUT_S"], config["MODEL_NAME"]) == (2.5, "from-test")
    assert config["KEY_FILE"] == DEFAULTS["KEY_FILE"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [("MODEL_NAME", "7"), ("KEY_FILE", "null"), ("TIMEOUT_S", "soon"), ("TIMEOUT_S", "true")],
)
def test_a_value_of_another_type_than_the_default_stops_the_start(monkeypatch, variable, value):
    monkeypatch.setenv(f"PETSEG_{variable}", value)
    with pytest.raises(ValueError, match=f"PETSEG_{variable} gave .* read as JSON"):
        create_app()


@pytest.fixture
def slow_torchserve(tmp_path):
    """A socket that accepts connections and never answers, with a valid-looking key file."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    keys = {k: {"key": "k"} for k in ("inference", "management", "API")}
    (tmp_path / "keys.json").write_text(json.dumps(keys))
    yield listener.getsockname()[1], tmp_path / "keys.json"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def test_slow_torchserve_is_504(slow_torchserve):
    port, key_file = slow_torchserve
    app = create_app(
        {
            "TORCHSERVE_INFERENCE_URL": f"http://127.0.0.1:{port}",
            "KEY_FILE": str(key_file),
            "TIMEOUT_S": 0.5,
        }
    )
    response = upload(app.test_client(), images.jpeg())
    assert response.status_code == 504 and "did not answer" in response.get_json()["message"]


def test_model_card_with_torchserve_down_is_503(offline_client):
    response = offline_client.get("/api/model")
    assert response.status_code == 503 and "key file" in response.get_json()["message"]
