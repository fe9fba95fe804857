"""The benchmark's parts: the naive baseline computes what the handler computes, the limit
rows and the report hold together. (Timings are never asserted: `make bench` prints them.)"""

from __future__ import annotations

import io
import json
import threading

import numpy as np
import pytest
import requests
from PIL import Image

from bench import report
from bench.inputs import pet_photo
from bench.limit import measure_limits
from bench.loadgen import Target, measure
from bench.naive_baseline import NaiveSegmenter, QueueingHTTPServer, make_handler
from handler.petseg_handler import PetSegHandler
from tests.support import images
from tests.support.handler_context import FakeContext, run


@pytest.fixture(scope="module")
def naive(tiny_export):
    return NaiveSegmenter(tiny_export)


def test_pet_photos_are_deterministic_jpegs():
    assert pet_photo(120, 90, seed=3) == pet_photo(120, 90, seed=3)
    assert Image.open(io.BytesIO(pet_photo(120, 90))).size == (120, 90)


def test_naive_baseline_predicts_what_the_fp32_handler_predicts(naive, tiny_export):
    fp32 = PetSegHandler()
    fp32.initialize(FakeContext(tiny_export, yaml={"handler": {"mixed_precision": False}}))
    data = pet_photo(200, 150, seed=1)
    (answer,), _ = run(fp32, [{"body": data}], tiny_export)
    served = np.asarray(images.from_base64(json.loads(answer)["mask_png"]))
    assert np.array_equal(served, naive.labels(data)[1])


def test_naive_baseline_answers_over_http(naive):
    server = QueueingHTTPServer(("127.0.0.1", 0), make_handler(naive))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        good = requests.post(url, data=pet_photo(160, 120), timeout=30).json()
        assert images.from_base64(good["mask_png"]).size == (160, 120)
        bad = requests.post(url, data=b"not an image", timeout=30)
        assert bad.status_code == 415 and "not a supported image" in bad.json()["message"]
        result = measure(Target(url), pet_photo(64, 48), total=6, concurrency=2)
        assert result.summary()["errors"] == 0 and len(result.latencies_ms) == 6
    finally:
        server.shutdown()
        server.server_close()


def test_limit_rows_and_report(naive, tmp_path):
    limits = measure_limits(naive.model, naive.spec.input_size, [1, 2], seconds=0.05)
    assert [(r["variant"], r["batch"]) for r in limits][:2] == [
        ("eager fp32", 1),
        ("eager fp32", 2),
    ]
    assert all(r["images_per_s"] is None or r["images_per_s"] > 0 for r in limits)
    loads = [
        {
            "system": system,
            "photo": photo,
            "concurrency": c,
            "images_per_s": 10.0 + c,
            "p50_ms": 50.0,
            "p95_ms": 60.0,
            "p99_ms": 70.0,
            "errors": 0,
            "server_rss_mb": 900,
        }
        for system in ("naive server (baseline)", *report.SERVED)
        for photo in ("500x375", "4000x3000")
        for c in (1, 4, 16)
    ]
    results = {
        "machine": report.machine(),
        "model": {"input_size": naive.spec.input_size},
        "limits": limits,
        "loads": loads,
        "mask_agreement_vs_fp32_eager": dict.fromkeys(report.SERVED, 0.999),
        "handler_timings_ms_500x375": {
            "request": 50.0,
            "preprocess": 2.0,
            "inference": 30.0,
            "postprocess": 4.0,
        },
    }
    results["targets"] = report.targets(results)
    met = {t["target"].split(",")[0]: t["met"] for t in results["targets"]}
    assert (
        met["served masks = fp32 eager masks"]
        and met["decode+preprocess+postprocess / request time"]
    )
    assert not met["TorchServe direct c=16 / naive server c=16 (500x375)"]  # 26 vs 26
    text = "\n".join(report.table(results))
    assert "eager fp32" in text and "MISSED" in text
    report.chart(results, tmp_path / "chart.png")
    with Image.open(tmp_path / "chart.png") as chart:
        assert chart.format == "PNG"
