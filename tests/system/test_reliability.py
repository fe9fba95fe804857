"""Faults and abuse against an own TorchServe + proxy: nothing crashes, nothing is lost."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests

from petseg.serving.launcher import Instance, serve_archive, stop, unused_ports
from tests.support import images
from tests.support.stack import name_ports, running_web, scraped


@pytest.fixture(scope="module")
def stack(model_store, tmp_path_factory):
    """TorchServe and the proxy, private to this module so faults disturb no other test."""
    instance = Instance(tmp_path_factory.mktemp("ts-faults"), model_store, unused_ports())
    name_ports(instance)
    state = {"instance": instance, "process": serve_archive(instance, timeout=240)}
    try:
        with running_web(instance, threads=24, TIMEOUT_S=30.0) as web:
            state["url"], state["operator"] = web.url, web.operator_url
            yield state
    finally:
        stop(instance, state["process"])


def wait_workers_ready(
    instance: Instance, count: int, timeout: float = 120, gone: int | None = None
) -> list[dict]:
    """The workers, once ``count`` are READY (and the one with pid ``gone`` is listed no more)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = instance.client().workers()
        ready = sum(w["status"] == "READY" for w in current)
        if ready >= count and gone not in {w["pid"] for w in current}:
            return current
        time.sleep(0.2)
    raise TimeoutError(f"not {count} READY workers without pid {gone} after {timeout} s")


def post(url: str, data: bytes, name: str = "upload.jpg") -> requests.Response:
    return requests.post(f"{url}/api/segment", files={"file": (name, data)}, timeout=60)


BAD = [
    b"",
    b"plain text, not a picture",
    b"%PDF-1.4\n1 0 obj <<>> endobj\n%%EOF",
    images.truncated_jpeg(),
    images.png_with_bad_crc(),
    images.png(1, 1),
    images.jpeg_claiming_size(30000, 30000),
    images.png_claiming_size(30000, 30000),
]


def test_mixed_load_gives_no_5xx_keeps_workers_and_memory(stack):
    instance = stack["instance"]
    before = wait_workers_ready(instance, 2)
    rss_before = sum(psutil.Process(w["pid"]).memory_info().rss for w in before)
    jobs = []
    for i in range(400):
        if i % 5 == 0:
            jobs.append((BAD[i // 5 % len(BAD)], None))
        else:
            size = (64 + 7 * (i % 40), 48 + 5 * (i % 30))
            jobs.append((images.jpeg(*size), size))

    def run(job):
        data, size = job
        return post(stack["url"], data), size

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(run, jobs))
    codes = Counter(r.status_code for r, _ in results)
    assert not any(code >= 500 for code in codes), codes
    for response, size in results:
        if size is None:
            assert 400 <= response.status_code < 500 and response.json()["message"]
        else:
            assert response.status_code == 200
            assert images.from_base64(response.json()["mask_png"]).size == size
    after = instance.client().workers()
    assert sorted(w["pid"] for w in after) == sorted(w["pid"] for w in before)
    rss_after = sum(psutil.Process(w["pid"]).memory_info().rss for w in after)
    assert rss_after - rss_before < 300 * 2**20, (rss_before, rss_after)


def test_a_killed_worker_is_replaced_and_clients_see_few_clean_errors(stack):
    instance = stack["instance"]
    victim = wait_workers_ready(instance, 2)[0]["pid"]
    body = images.jpeg(200, 150)
    refusals = ("overloaded", "worker_failed")
    counted = {
        c: scraped(stack["operator"], "petseg_proxy_uploads_total", outcome=c) for c in refusals
    }
    results: list[requests.Response] = []
    stopping = threading.Event()

    def client():
        while not stopping.is_set():
            results.append(post(stack["url"], body))

    def answered(count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while len(results) < count:
            assert time.monotonic() < deadline, f"{len(results)} answers of {count}"
            time.sleep(0.02)

    clients = [threading.Thread(target=client) for _ in range(8)]
    for thread in clients:
        thread.start()
    try:
        answered(40)  # the load is under way: the kill lands in the middle of it
        os.kill(victim, signal.SIGKILL)
        wait_workers_ready(instance, 2, gone=victim)
        answered(len(results) + 40)  # and it goes on after the replacement
    finally:
        stopping.set()
        for thread in clients:
            thread.join()
    codes = Counter(r.status_code for r in results)
    assert set(codes) <= {200, 503}, (codes, [r.text for r in results if r.status_code != 200])
    assert codes[503] <= 8, codes
    for response in results:
        if response.status_code == 503:
            assert response.json()["message"]
    now = {c: scraped(stack["operator"], "petseg_proxy_uploads_total", outcome=c) for c in refusals}
    assert sum(now.values()) - sum(counted.values()) == codes[503], (counted, now)
    assert all(r.status_code == 200 for r in results[-10:])


def test_torchserve_down_gives_503_and_the_proxy_recovers_by_itself(stack):
    instance = stack["instance"]
    stop(instance, stack["process"])
    response = post(stack["url"], images.jpeg())
    assert response.status_code == 503
    assert "TorchServe" in response.json()["message"]
    health = requests.get(f"{stack['url']}/api/health", timeout=10)
    assert health.status_code == 503 and health.json()["torchserve"] == "down"
    assert scraped(stack["operator"], "petseg_torchserve_up") == 0
    assert scraped(stack["operator"], "petseg_proxy_uploads_total", outcome="torchserve_down")

    stack["process"] = serve_archive(instance, timeout=240)
    assert requests.get(f"{stack['url']}/api/health", timeout=10).status_code == 200
    assert post(stack["url"], images.jpeg()).status_code == 200
    assert scraped(stack["operator"], "petseg_torchserve_up") == 1


@pytest.fixture(scope="module")
def small_queue(model_store, tmp_path_factory):
    """A TorchServe whose job queue holds 2 requests, and its proxy: easy to overflow."""
    workdir = tmp_path_factory.mktemp("ts-small-queue")
    ports = unused_ports()
    instance = Instance(workdir, model_store, ports, overrides={"job_queue_size": "2"})
    name_ports(instance)
    process = serve_archive(instance, timeout=240)
    try:
        with running_web(instance, threads=48) as web:
            yield instance, web
    finally:
        stop(instance, process)


def burst(send, count: int) -> list[requests.Response]:
    """``count`` requests released at the same moment."""
    gate = threading.Barrier(count)

    def one(_):
        gate.wait()
        return send()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_a_full_queue_is_a_quick_503_to_retry_not_a_hang(small_queue):
    instance, web = small_queue
    url = web.url
    body = images.jpeg(1200, 900)
    headers = {"Authorization": f"Bearer {instance.keys()['inference']}"}
    direct = burst(
        lambda: requests.post(
            instance.url("inference", "/predictions/petseg"),
            data=body,
            headers={**headers, "Content-Type": "image/jpeg"},
            timeout=60,
        ),
        48,
    )
    assert Counter(r.status_code for r in direct).keys() == {200, 503}

    started = time.monotonic()
    proxied = burst(lambda: post(url, body), 48)
    codes = Counter(r.status_code for r in proxied)
    assert codes.keys() == {200, 503}, codes
    refused = [r for r in proxied if r.status_code == 503]
    assert all(r.headers["Retry-After"] == "1" for r in refused)
    messages = [r.json()["message"] for r in refused]
    assert all("overloaded" in m and "retry" in m for m in messages), messages
    assert time.monotonic() - started < 45, "a full queue must not make clients wait"
    assert post(url, body).status_code == 200
    overloaded = scraped(web.operator_url, "petseg_proxy_uploads_total", outcome="overloaded")
    assert overloaded == len(refused)


@pytest.mark.parametrize(
    "path",
    [
        "/api/../models",
        "/api/segment/../../models",
        "/%2e%2e/models",
        "/api/%2e%2e/metrics",
        "/models/petseg",
        "/api/segment%2F..%2F..%2Fmodels",
        "/metrics",
        "/status",
        "/api/../status",
        "/api/token",
    ],
)
def test_management_and_metrics_are_not_reachable_through_the_proxy(stack, path):
    for method in ("GET", "POST", "DELETE", "PUT"):
        response = requests.request(method, stack["url"] + path, timeout=10)
        assert response.status_code in (404, 405), (method, path, response.status_code)
        assert "modelName" not in response.text and "ts_" not in response.text


def test_absolute_url_request_line_cannot_reach_management(stack):
    import socket

    port = int(stack["url"].rsplit(":", 1)[1])
    target = stack["instance"].url("management", "/models")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    assert status in (400, 404) and b"modelName" not in reply


def test_errors_never_carry_tokens_or_tracebacks(stack):
    keys = set(stack["instance"].keys().values())
    for data in [*BAD, images.jpeg()]:
        response = post(stack["url"], data)
        assert not any(key in response.text for key in keys)
        assert "Traceback" not in response.text and "<html" not in response.text.lower()
        json.loads(response.text)
