"""The operators' listener (GET /metrics, GET /status) beside the public one, and what the
status page shows (and leaves to the dashboard)."""

from __future__ import annotations

import json
import re
import socket

import pytest
import requests

from frontend_server import create_app
from frontend_server.metrics import ProxyMetrics
from frontend_server.operator import operator_app, parse_address
from frontend_server.status import status, versions
from frontend_server.wsgi import make_server
from tests.support import images
from tests.support.web import SECURITY_HEADERS, offline_config, security_headers, serving
from torchserve_client import Health, ServingReport, Unreachable

KEYS = {"inference": "inference-secret-1", "management": "mgmt-secret-2", "API": "api-secret-3"}


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="module")
def web(keys_dir):
    """A web app with a key file (TorchServe down) and its operators' listener."""
    key_file = keys_dir / "key_file.json"
    key_file.write_text(json.dumps({kind: {"key": key} for kind, key in KEYS.items()}))
    config = offline_config(keys_dir, KEY_FILE=str(key_file), METRICS_ADDRESS="127.0.0.1:0")
    with serving(config) as urls:
        yield urls


@pytest.mark.parametrize(
    "path",
    [
        "/metrics",
        "/status",
        "/api/../metrics",
        "/api/%2e%2e/metrics",
        "/%2e%2e/status",
        "/api/segment/..%2F..%2Fmetrics",
        "/static/../metrics",
        "//metrics",
    ],
)
def test_the_public_listener_serves_no_metrics_or_status(web, path):
    public, _ = web
    response = requests.get(public + path, timeout=10)
    assert response.status_code == 404, (path, response.status_code)
    assert "petseg_proxy" not in response.text and "serving state" not in response.text


def test_the_operators_listener_serves_both(web):
    public, operator = web
    requests.post(f"{public}/api/segment", files={"file": ("a.jpg", images.jpeg())}, timeout=10)
    scrape = requests.get(f"{operator}/metrics", timeout=10)
    assert scrape.status_code == 200 and scrape.headers["Content-Type"].startswith("text/plain")
    assert re.search(r'petseg_proxy_uploads_total\{outcome="torchserve_down"\} [1-9]', scrape.text)
    assert "petseg_torchserve_up 0.0" in scrape.text
    status = requests.get(f"{operator}/status", timeout=10)
    assert status.status_code == 200 and "model served" in status.text
    assert requests.get(f"{operator}/api/segment", timeout=10).status_code == 404
    assert requests.get(f"{operator}/static/script.js", timeout=10).status_code == 404


@pytest.mark.parametrize(
    ("path", "status"),
    [("/status", 200), ("/static/status.css", 200), ("/metrics", 200), ("/nope", 404)],
)
def test_the_operators_answers_carry_the_security_headers(web, path, status):
    _, operator = web
    response = requests.get(operator + path, timeout=10)
    assert response.status_code == status
    assert security_headers(response) == SECURITY_HEADERS


def test_metrics_and_status_never_show_keys_urls_or_paths(web, keys_dir):
    public, operator = web
    for _ in range(3):
        requests.post(f"{public}/api/segment", files={"file": ("a.jpg", b"junk")}, timeout=10)
    for page in ("/metrics", "/status", "/status.json"):
        text = requests.get(operator + page, timeout=10).text
        assert not any(key in text for key in KEYS.values())
        assert str(keys_dir) not in text and "key_file" not in text and "http://" not in text


def test_without_an_address_there_is_no_operators_listener(tmp_path):
    with serving(offline_config(tmp_path)) as (public, operator):
        assert operator is None
        assert requests.get(f"{public}/metrics", timeout=10).status_code == 404


def test_a_taken_port_stops_the_start_and_frees_the_public_one(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        app = create_app(offline_config(tmp_path, METRICS_ADDRESS=address))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with pytest.raises(OSError, match="PETSEG_METRICS_ADDRESS to another host:port"):
            make_server(app, "127.0.0.1", port)
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))  # the public port was released


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("127.0.0.1:5001", ("127.0.0.1", 5001)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:9", ("::1", 9)),
    ],
)
def test_addresses(address, parsed):
    assert parse_address(address) == parsed


@pytest.mark.parametrize("address", ["5001", "localhost", ":5001", "host:port"])
def test_bad_addresses_are_refused(address):
    with pytest.raises(ValueError, match="host:port"):
        parse_address(address)


class FakeTorchServe:
    """The calls the status page makes, answered from ``held``: version -> worker states."""

    def __init__(self, held: dict[str, list[str]], default: str, health: Health) -> None:
        self.held, self.default, self._health = held, default, health

    def health(self) -> Health:
        return self._health

    def default_version(self) -> str:
        if not self.held:
            raise Unreachable("TorchServe is not reachable at http://127.0.0.1:9")
        return self.default

    def describe(self) -> list[dict]:
        return [
            {"modelVersion": version, "workers": [{"status": state} for state in states]}
            for version, states in self.held.items()
        ]


class FakeTrial:
    def __init__(self, figures: dict | None = None) -> None:
        self._figures = figures

    def figures(self) -> dict | None:
        return self._figures


PROBLEM = "version 3.0 (missing.mar): missing.mar is not in the model store"
SERVING = FakeTorchServe(
    {"2.0": ["READY"], "1.0": ["READY", "STARTING"]},
    "1.0",
    Health(True, 1, 2, "ready", ServingReport("/srv/serving.json", True, problems=[PROBLEM])),
)
ROLLOUT = {
    "version": "2.0",
    "mode": "shadow",
    "percent": 10,
    "stopped_here": None,
    "candidate_requests": 40,
    "candidate_failures": 1,
    "shadow_compared": 39,
    "mean_agreement": 0.97,
    "mean_iou": {"cat": 0.91},
}


def test_versions_come_default_first_with_their_ready_workers():
    assert versions(SERVING) == [
        {"version": "1.0", "default": True, "ready_workers": 1, "workers": 2},
        {"version": "2.0", "default": False, "ready_workers": 1, "workers": 1},
    ]
    down = FakeTorchServe({}, "1.0", Health(False, 0, 0, "down"))
    assert versions(down) == []


def test_the_status_says_what_is_served_and_no_url_or_path():
    shown = status(SERVING, FakeTrial(ROLLOUT))
    assert shown["served"] and shown["torchserve"] == "up" and shown["problems"] == [PROBLEM]
    assert [v["version"] for v in shown["versions"]] == ["1.0", "2.0"]
    assert shown["rollout"] == ROLLOUT
    assert "detail" not in shown and "/srv" not in json.dumps(shown)


def figures_on(page: str) -> dict[str, str]:
    return dict(re.findall(r'<dd id="([\w-]+)"[^>]*>\s*([^<]*?)\s*</dd>', page))


LEFT_TO_THE_DASHBOARD = ("uploads per minute", "p95", "latency (", "5xx", "in progress")
"""What the page showed before the dashboard did: it must not come back."""


def test_the_status_page_shows_versions_problems_and_the_rollout():
    app = operator_app(ProxyMetrics(), SERVING, FakeTrial(ROLLOUT))
    page = app.test_client().get("/status").text
    figures = figures_on(page)
    assert (figures["served"], figures["torchserve"]) == ("yes", "up")
    assert figures["versions"] == "1.0 (default): 1 of 2, 2.0: 1 of 1"
    assert figures["serving-state"] == "1 problem(s)" and PROBLEM in page
    assert "rollout: 2.0, shadow of 10 %" in page and "mean IoU, cat" in page
    assert not [shown for shown in LEFT_TO_THE_DASHBOARD if shown in page]


def test_the_status_page_with_torchserve_down(web):
    _, operator = web
    page = requests.get(f"{operator}/status", timeout=10).text
    figures = figures_on(page)
    assert (figures["served"], figures["torchserve"], figures["versions"]) == ("no", "down", "none")
    assert figures["serving-state"] == "not applied yet" and "rollout" not in page
    assert not [shown for shown in LEFT_TO_THE_DASHBOARD if shown in page]
    assert 'http-equiv="refresh"' in page
