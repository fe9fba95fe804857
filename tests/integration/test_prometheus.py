"""A real Prometheus scrapes the session's TorchServe and a proxy of its own while 200 uploads
go through; its answers must agree with what the client saw, the alert rules must evaluate on
the real series, and every dashboard panel's query must run and find data."""

from __future__ import annotations

import bisect
import functools
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import yaml

from frontend_server.metrics import LATENCY_BUCKETS
from petseg.packaging.archive import build_archive
from petseg.serving.reconcile import apply_state
from tests.support import images
from tests.support.prometheus import CONFIG_DIR, running_prometheus
from tests.support.stack import running_web

DASHBOARD = CONFIG_DIR.parent / "grafana" / "petseg-dashboard.json"
MAX_UPLOAD_MB = 0.1
OK_UPLOADS, JUNK, NO_FILE, TOO_LARGE = 170, 10, 10, 10
"""200 uploads: photos, bytes TorchServe refuses (415), multipart without a file (the proxy's
own 400) and bodies over the proxy's limit (413)."""
SEGMENT_OK = 'route="api.segment",status_class="2xx"'


def upload(url: str, kind: str, i: int) -> tuple[int, float]:
    """One upload of ``kind``; its status and the client's latency in seconds."""
    files = {
        "ok": {"file": ("photo.jpg", images.jpeg(64 + i % 50, 48 + i % 30))},
        "junk": {"file": ("junk.jpg", b"not an image %d" % i)},
        "no_file": {"other": ("x.txt", b"x")},
        "too_large": {"file": ("big.jpg", b"\xff" * int(2 * MAX_UPLOAD_MB * 2**20))},
    }[kind]
    started = time.perf_counter()
    status = requests.post(f"{url}/api/segment", files=files, timeout=60).status_code
    return status, time.perf_counter() - started


@pytest.fixture(scope="module")
def monitored(server, tmp_path_factory):
    """The session's TorchServe, a fresh proxy and Prometheus scraping both, once both
    targets have been scraped."""
    with running_web(server, MAX_UPLOAD_MB=MAX_UPLOAD_MB) as web:
        targets = {
            "torchserve": f"127.0.0.1:{server.ports.metrics}",
            "petseg-proxy": web.operator_url.removeprefix("http://"),
        }
        with running_prometheus(tmp_path_factory.mktemp("prometheus"), targets) as prometheus:
            prometheus.wait_for("sum(up)", lambda up: up == 2)
            yield web, prometheus


@pytest.fixture(scope="module")
def traffic(monitored):
    """The 200 uploads, 4 at a time; what the client saw, and TorchServe's request count
    (as Prometheus has it) before them."""
    web, prometheus = monitored
    # TorchServe's counter exists from its first request on; both targets are scraped already
    before = prometheus.value("sum(ts_inference_requests_total) or vector(0)")
    kinds = ["ok"] * OK_UPLOADS + ["junk"] * JUNK + ["no_file"] * NO_FILE
    kinds += ["too_large"] * TOO_LARGE
    kinds = kinds[::2] + kinds[1::2]  # mixed, not in blocks
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(functools.partial(upload, web.url), kinds, range(len(kinds))))
    statuses = Counter(status for status, _ in results)
    assert statuses == {200: OK_UPLOADS, 415: JUNK, 400: NO_FILE, 413: TOO_LARGE}, statuses
    latencies = sorted(seconds for status, seconds in results if status == 200)
    # until a scrape holds them all (each is counted once its latency is): the last uploads
    # sent are refused ones, so a scrape after the last photo could still miss some of them
    prometheus.wait_for("sum(petseg_proxy_uploads_total)", lambda n: n == len(kinds))
    return {"latencies": latencies, "torchserve_before": before}


def bucket(seconds: float) -> int:
    return bisect.bisect_left(LATENCY_BUCKETS, seconds)


def test_p95_from_the_histogram_agrees_with_the_client_within_a_bucket(monitored, traffic):
    _, prometheus = monitored
    latencies = traffic["latencies"]
    client_p95 = latencies[round(0.95 * (len(latencies) - 1))]
    buckets = f"petseg_proxy_request_duration_seconds_bucket{{{SEGMENT_OK}}}"
    server_p95 = prometheus.value(f"histogram_quantile(0.95, sum by (le) ({buckets}))")
    assert abs(bucket(server_p95) - bucket(client_p95)) <= 1, (server_p95, client_p95)


def test_uploads_by_outcome_equal_what_the_client_sent(monitored, traffic):
    _, prometheus = monitored
    counted = {
        s["metric"]["outcome"]: float(s["value"][1])
        for s in prometheus.query("sum by (outcome) (petseg_proxy_uploads_total)")
    }
    expected = {"ok": OK_UPLOADS, "bad_input": JUNK + NO_FILE, "too_large": TOO_LARGE}
    assert {k: v for k, v in counted.items() if v} == expected


def test_torchserve_counted_the_uploads_that_reached_it(monitored, traffic):
    _, prometheus = monitored
    reached = OK_UPLOADS + JUNK  # the proxy answered the others itself
    after = prometheus.wait_for(
        "sum(ts_inference_requests_total)",
        lambda v: v is not None and v >= traffic["torchserve_before"] + reached,
    )
    assert after - traffic["torchserve_before"] == reached
    masks = prometheus.value('sum(PetsegForegroundFraction_count{ModelVersion="1.0"})')
    assert masks >= OK_UPLOADS


def test_the_alert_rules_evaluate_on_the_real_series_and_stay_quiet(monitored, traffic):
    _, prometheus = monitored
    prometheus.wait_for("count(ALERTS) or vector(0)", lambda n: n == 0)
    groups = prometheus.api("rules", type="alert")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    declared = yaml.safe_load((CONFIG_DIR / "alerts.yml").read_text())["groups"]
    assert {r["name"] for r in rules} == {r["alert"] for g in declared for r in g["rules"]}
    deadline = time.monotonic() + 10
    while any(rule["health"] == "unknown" for rule in rules):  # not evaluated yet
        assert time.monotonic() < deadline, rules
        time.sleep(0.5)
        rules = [r for g in prometheus.api("rules", type="alert")["groups"] for r in g["rules"]]
    assert all(r["health"] == "ok" and r["state"] == "inactive" for r in rules), rules


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


@pytest.fixture(scope="module")
def trial_traffic(monitored, traffic, server, model_store, tiny_export, tmp_path_factory):
    """After the uploads above: a shadow rollout of a second version (1.9, the same weights)
    over 20 more photos, until Prometheus has their comparisons; the session's TorchServe is
    brought back to its own state afterwards."""
    web, prometheus = monitored
    build_archive(tiny_export, model_store, name="petseg-trial", version="1.9")
    trial = tmp_path_factory.mktemp("trial") / "serving.json"
    versions = {
        "1.0": {"archive": "petseg.mar"},
        "1.9": {"archive": "petseg-trial.mar", "workers": 1},
    }
    rollout = {"version": "1.9", "mode": "shadow", "percent": 100, "min_requests": 10**6}
    trial.write_text(json.dumps({"default": "1.0", "versions": versions, "rollout": rollout}))
    client = server.client()
    apply_state(client, trial, model_store, server.workdir, durable=True)
    try:
        for i in range(20):
            assert upload(web.url, "ok", i)[0] == 200
        prometheus.wait_for(
            "sum(petseg_rollout_shadow_agreement_count) or vector(0)", lambda n: n >= 10
        )
        yield
    finally:
        apply_state(client, server.workdir / "serving.json", model_store, server.workdir, True)


@pytest.mark.parametrize(("title", "expr"), dashboard_queries())
def test_every_dashboard_query_runs_and_finds_data(monitored, trial_traffic, title, expr):
    _, prometheus = monitored
    query = expr.replace("$__rate_interval", "1m").replace("$version", ".*")
    deadline = time.monotonic() + 30  # a scrape that failed under load leaves a gap: the next
    while not prometheus.query(query):
        assert time.monotonic() < deadline, f"{title}: no data for {query}"
        time.sleep(1)
