"""The operators' listener (GET /metrics, GET /status) beside the public one, and the status
page's figures."""

from __future__ import annotations

import json
import re
import socket

import pytest
import requests

from frontend_server import create_app
from frontend_server.metrics import ProxyMetrics
from frontend_server.operator import parse_address
from frontend_server.status import StatusWindow, quantile
from frontend_server.wsgi import make_server
from tests.support import images
from tests.support.web import SECURITY_HEADERS, offline_config, security_headers, serving
from torchserve_client import Health

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
    assert "petseg_proxy" not in response.text and "uploads per minute" not in response.text


def test_the_operators_listener_serves_both(web):
    public, operator = web
    requests.post(f"{public}/api/segment", files={"file": ("a.jpg", images.jpeg())}, timeout=10)
    scrape = requests.get(f"{operator}/metrics", timeout=10)
    assert scrape.status_code == 200 and scrape.headers["Content-Type"].startswith("text/plain")
    assert re.search(r'petseg_proxy_uploads_total\{outcome="torchserve_down"\} [1-9]', scrape.text)
    assert "petseg_torchserve_up 0.0" in scrape.text
    status = requests.get(f"{operator}/status", timeout=10)
    assert status.status_code == 200 and "uploads per minute" in status.text
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
    for page in ("/metrics", "/status"):
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


def test_quantiles_interpolate_within_the_bucket_like_prometheus():
    buckets = {0.1: 50.0, 0.2: 90.0, 0.4: 100.0, float("inf"): 100.0}
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.7, buckets) == pytest.approx(0.15)
    assert quantile(0.95, buckets) == pytest.approx(0.3)
    assert quantile(0.25, buckets) == pytest.approx(0.05)
    assert quantile(0.99, {0.1: 1.0, float("inf"): 10.0}) == 0.1
    assert quantile(0.95, {0.1: 0.0, float("inf"): 0.0}) is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_status_figures_cover_the_last_minute():
    metrics, clock = ProxyMetrics(), Clock()
    metrics.watch_torchserve(lambda: Health(True, 2, 2, "ready"))
    window = StatusWindow(metrics, clock)
    for _ in range(30):
        metrics.observe_request("api.segment", 200, "1.0", 0.05)
    clock.now += 30
    first = window.figures()
    assert first["window_s"] == 30 and first["uploads_per_minute"] == 60.0
    assert 40 <= first["p95_ms"] <= 50 and first["versions"] == ["1.0"]
    assert (first["ready_workers"], first["workers"], first["torchserve_up"]) == (2, 2, True)

    clock.now += 60
    for _ in range(9):
        metrics.observe_request("api.segment", 200, "2.0", 0.3)
    metrics.observe_request("api.segment", 503, "none", 0.01)
    metrics.observe_request("pages.index", 200, "none", 0.001)  # not an upload
    later = window.figures()
    assert later["window_s"] == 60 and later["uploads_per_minute"] == 10.0
    assert later["errors_percent"] == 10.0 and later["versions"] == ["2.0"]
    assert 250 <= later["p95_ms"] <= 300


def test_the_status_page_shows_the_figures(web):
    _, operator = web
    page = requests.get(f"{operator}/status", timeout=10).text
    figures = dict(re.findall(r'<dd id="([\w-]+)"[^>]*>\s*([^<]*?)\s*</dd>', page))
    assert figures["torchserve"] == "down" and figures["ready-workers"] == "0 of 0"
    assert figures["p95"] == "no uploads" and figures["versions"] == "none yet"
    assert 'http-equiv="refresh"' in page
