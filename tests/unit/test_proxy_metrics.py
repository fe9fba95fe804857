"""The web app's own metrics (frontend_server.metrics): every upload counted once by how it
ended, every request timed by route, status class and model version."""

from __future__ import annotations

from email.message import Message

import pytest

from frontend_server import create_app, upstream
from frontend_server.metrics import LATENCY_BUCKETS, LOAD_METRIC, OUTCOMES, ProxyMetrics, outcome
from frontend_server.upstream import UpstreamError
from handler.protocol import MODEL_VERSION_HEADER
from tests.support import images
from tests.support.web import offline_config, sample, upload
from torchserve_client import Health, KeyFileError, Reply, TorchServeError, Unreachable


@pytest.mark.parametrize(
    ("status", "cause", "expected"),
    [
        (200, None, "ok"),
        (400, None, "bad_input"),
        (404, None, "bad_input"),
        (415, None, "bad_input"),
        (413, None, "too_large"),
        (503, "overloaded", "overloaded"),
        (504, "timeout", "timeout"),
        (503, "torchserve_down", "torchserve_down"),
        (500, None, "internal_error"),
        (500, "made up", "internal_error"),
    ],
)
def test_outcomes(status, cause, expected):
    assert outcome(status, cause) == expected


def torchserve_answer(status: int, **headers: str) -> Reply:
    message = Message()
    for name, value in headers.items():
        message[name] = value
    return Reply(status, "", message, b"{}")


@pytest.mark.parametrize(
    ("status", "proxy_status", "cause"),
    [
        (503, 503, "overloaded"),
        (507, 503, "worker_failed"),
        (500, 503, "worker_failed"),
        (404, 503, "torchserve_down"),
        (502, 502, "upstream_error"),
    ],
)
def test_torchserve_failures_have_a_cause(status, proxy_status, cause):
    with pytest.raises(UpstreamError) as failed:
        upstream.answer(torchserve_answer(status), "petseg")
    assert (failed.value.status, failed.value.cause) == (proxy_status, cause)


def test_an_answer_brings_the_version_and_torchserve_s_id():
    answer = upstream.answer(
        torchserve_answer(200, **{MODEL_VERSION_HEADER: "2.0", "x-request-id": "ts-uuid"}), "m"
    )
    assert (answer.model_version, answer.torchserve_id) == ("2.0", "ts-uuid")


@pytest.mark.parametrize(
    ("error", "status", "cause"),
    [
        (Unreachable("slow", timed_out=True), 504, "timeout"),
        (Unreachable("refused"), 503, "torchserve_down"),
        (KeyFileError("no key file"), 503, "torchserve_down"),
        (TorchServeError("no such model", 404), 503, "torchserve_down"),
    ],
)
def test_client_failures_have_a_cause(error, status, cause):
    with pytest.raises(UpstreamError) as failed, upstream.reporting("petseg"):
        raise error
    assert (failed.value.status, failed.value.cause) == (status, cause)


@pytest.fixture
def app(tmp_path):
    return create_app(offline_config(tmp_path, MAX_UPLOAD_MB=0.05))


def test_uploads_are_counted_once_by_outcome(app):
    client = app.test_client()
    client.post("/api/segment", data={})  # no file: the proxy's own 400
    upload(client, b"\xff" * 300_000)  # over the limit
    upload(client, images.jpeg())  # TorchServe is down
    upload(client, images.jpeg())
    client.get("/api/health")  # not an upload
    counts = {name: sample(app, "petseg_proxy_uploads_total", outcome=name) for name in OUTCOMES}
    assert counts == {name: 0 for name in OUTCOMES} | {
        "bad_input": 1,
        "too_large": 1,
        "torchserve_down": 2,
    }
    assert sample(app, "petseg_proxy_upload_bytes_count") == 4
    assert sample(app, "petseg_proxy_upload_bytes_sum") > 300_000


def test_requests_are_timed_by_route_status_class_and_version(app):
    client = app.test_client()
    upload(client, images.jpeg())
    client.get("/")
    client.get("/api/../metrics")
    name = "petseg_proxy_request_duration_seconds_count"
    segment = {"route": "api.segment", "status_class": "5xx", "model_version": "none"}
    assert sample(app, name, **segment) == 1
    assert sample(app, name, route="pages.index", status_class="2xx", model_version="none") == 1
    assert sample(app, name, route="unmatched", status_class="4xx", model_version="none") == 1
    bucket = "petseg_proxy_request_duration_seconds_bucket"
    assert sample(app, bucket, **segment, le=str(LATENCY_BUCKETS[-1])) == 1
    assert sample(app, "petseg_proxy_upstream_duration_seconds_count") == 1


def test_the_in_flight_gauge_counts_requests_under_way(app):
    app.add_url_rule("/probe", "probe", lambda: str(sample(app, "petseg_proxy_requests_in_flight")))
    client = app.test_client()
    assert client.get("/probe").text == "1.0"
    assert sample(app, "petseg_proxy_requests_in_flight") == 0


def test_key_renewals_have_a_series_from_the_start(app):
    for key in ("inference", "management"):
        assert (
            app.extensions["metrics"].registry.get_sample_value(
                "petseg_proxy_token_renewals_total", {"key": key}
            )
            == 0
        )


def test_torchserve_s_state_is_read_at_scrape_time(app):
    assert sample(app, "petseg_torchserve_up") == 0
    assert sample(app, "petseg_torchserve_ready_workers") == 0


@pytest.mark.parametrize(("ready", "load"), [(2, 1.5), (0, 3.0)])
def test_the_load_is_the_calls_under_way_per_ready_worker(ready: int, load: float):
    metrics = ProxyMetrics()
    metrics.watch_torchserve(lambda: Health(True, ready, 2, "ready"))
    value = metrics.registry.get_sample_value
    with metrics.upstream_call(), metrics.upstream_call(), metrics.upstream_call():
        assert value("petseg_proxy_upstream_in_flight") == 3
        assert value(LOAD_METRIC) == load
    assert value("petseg_proxy_upstream_in_flight") == value(LOAD_METRIC) == 0
    assert value("petseg_proxy_upstream_duration_seconds_count") == 3


def test_a_failed_call_is_no_longer_counted_as_under_way():
    metrics = ProxyMetrics()
    metrics.watch_torchserve(lambda: Health(True, 1, 1, "ready"))
    with pytest.raises(UpstreamError), metrics.upstream_call():
        raise UpstreamError(503, "queue full", "overloaded")
    assert metrics.registry.get_sample_value(LOAD_METRIC) == 0
