"""The benchmark's parts: the naive baseline computes what the handler computes, the limit
rows and the report hold together. (Timings are never asserted: `make bench` prints them.)"""

from __future__ import annotations

import io
import json
import threading
from typing import get_type_hints

import numpy as np
import pytest
import requests
import torch
from PIL import Image

from bench import ablation, report
from bench.inputs import pet_photo
from bench.limit import measure_limits
from bench.loadgen import Target, measure
from bench.naive_baseline import NaiveSegmenter, QueueingHTTPServer, make_handler
from bench.pipeline import PipelineRun, pipeline_limit
from bench.run import Workload, batched_agreement, random_weights_model
from handler.model import load_exported
from handler.settings import HandlerConfig
from handler.spec import ModelSpec
from tests.support import images
from tests.support.handler_context import handler_for, run


@pytest.fixture(scope="module")
def naive(tiny_export):
    return NaiveSegmenter(tiny_export)


def test_pet_photos_are_deterministic_jpegs():
    assert pet_photo(120, 90, seed=3) == pet_photo(120, 90, seed=3)
    assert Image.open(io.BytesIO(pet_photo(120, 90))).size == (120, 90)


def test_naive_baseline_predicts_what_the_fp32_handler_predicts(naive, tiny_export):
    fp32 = handler_for(tiny_export, {"handler": {"mixed_precision": False}})
    data = pet_photo(200, 150, seed=1)
    (answer,), _ = run(fp32, [{"body": data}])
    served = np.asarray(images.from_base64(json.loads(answer)["mask_png"]))
    assert np.array_equal(served, naive.labels(data))


def test_served_masks_are_checked_against_fp32_eager_in_one_batch(naive, tiny_export):
    photos = [pet_photo(200, 150, seed=seed) for seed in (1, 2, 3)]
    fp32 = [naive.labels(photo) for photo in photos]
    flipped = [1 - labels.clip(0, 1) for labels in fp32]  # what a wrong mask would be
    work = Workload({}, [], {"same": photos, "wrong": photos}, {"same": fp32, "wrong": flipped})
    settings = {"batchSize": 3, "handler": {"mixed_precision": False}}
    agreement = batched_agreement(tiny_export, settings, work)
    assert agreement["same"] == 1.0 and agreement["wrong"] < 1.0


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


def test_limit_rows(naive):
    limits = measure_limits(naive.model, naive.spec.input_size, [1, 2], seconds=0.05)
    assert [(r["variant"], r["batch"]) for r in limits][:2] == [
        ("eager fp32", 1),
        ("eager fp32", 2),
    ]
    assert all(r["images_per_s"] is None or r["images_per_s"] > 0 for r in limits)


def test_pipeline_limit_runs_the_handler_in_every_configured_worker(tiny_export):
    settings = {"workers": 2, "batchSize": 2, "handler": {"threads": 1}}
    row = pipeline_limit(PipelineRun(tiny_export, settings, pet_photo(120, 90), 0.2, 2))
    assert row["workers"] == 2 and row["repeats"] == 2
    assert 0 < row["min"] <= row["images_per_s"] <= row["max"]


def test_the_speed_model_has_the_demo_classes_at_256_px(tiny_export, tmp_path):
    folder = random_weights_model(tiny_export, tmp_path / "random")
    model, spec = load_exported(folder)
    assert spec.input_size == 256 and spec.class_names == ModelSpec.load(tiny_export).class_names
    assert "random" in spec.training_data["kind"]
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 256, 256)).shape == (1, spec.num_outputs, 256, 256)


def fake_model(direct16: float, trained: bool) -> dict:
    """Results of one model with the naive server at 10 img/s and 100 ms everywhere."""
    loads = []
    for system in (report.NAIVE, *report.SERVED):
        for photo in report.PHOTOS:
            for c in (1, 4, 16):
                served = system != report.NAIVE
                rate = direct16 if served and c == 16 else 10.0
                p50 = {report.NAIVE: 100.0, report.DIRECT: 90.0, report.PROXY: 92.0}[system]
                loads.append(
                    {
                        "system": system,
                        "photo": photo,
                        "concurrency": c,
                        "images_per_s": rate,
                        "p50_ms": p50,
                        "p95_ms": p50,
                        "p99_ms": p50,
                        "errors": 0,
                        "server_rss_mb": 900,
                    }
                )
    pipeline = {"images_per_s": 40.0, "min": 39.0, "max": 41.0, "repeats": 3, "workers": 2}
    return {
        "trained": trained,
        "input_size": 96,
        "limits": [{"variant": "eager fp32", "batch": 1, "images_per_s": 20.0}],
        "pipeline": dict.fromkeys(report.PHOTOS, pipeline),
        "loads": loads,
        "handler_timings_ms": {
            photo: {"request": 100.0, "preprocess": 50.0, "postprocess": 110.0}
            for photo in report.PHOTOS
        },
        "worker_memory": [{"pid": 1, "idle_mb": 900, "after_burst_mb": 1500, "settled_mb": 1100}],
        "proxy_added_ms": {
            photo: {"median": 2.0, "q1": 1.0, "q3": 3.0, "pairs": 40} for photo in report.PHOTOS
        },
        "mask_agreement_vs_fp32_eager": {
            system: dict.fromkeys(report.PHOTOS, 0.999) for system in report.SERVED
        },
        "bulk": {
            photo: [
                {"runs": runs, "photos": 32, "concurrency": 16, "failed": 0}
                | {"images_per_s": share * direct16}
                for runs, share in zip(report.BULK_RUNS, (1.05, 1.0, 0.95, 0.85), strict=True)
            ]
            for photo in report.PHOTOS
        },
        "ablation": [
            {"switch": switch, "measure": "lone_ms", "photo": "500x375", "applies": "one user"}
            | {"on": 40.0, "off": 40.0 * (1 + gain), "gain": gain, "pays": gain >= 0.1}
            for switch, gain in (("lone_request_every_core", 0.48), ("mixed_precision", 0.05))
        ],
    }


def test_report_checks_every_target_per_model_and_charts_both_sizes(tmp_path):
    results = {
        "machine": report.machine(),
        "decode_ms": dict.fromkeys(report.PHOTOS, 50.0),
        "models": {"demo": fake_model(36.0, True), "256": fake_model(20.0, False)},
    }
    results["targets"] = report.targets(results)
    met = {t["target"]: t["met"] for t in results["targets"]}
    assert met["demo: direct c=16 / pipeline limit, 500x375"]  # 36 / 40
    assert not met["256: direct c=16 / pipeline limit, 500x375"]  # 20 / 40
    assert met["demo: direct c=16 / naive c=16, 4000x3000"]  # 36 / 10
    assert not met["256: direct c=16 / naive c=16, 500x375"]  # 20 / 10
    assert met["demo: direct c=1 p50 / naive c=1 p50, 500x375"]  # 90 / 100
    assert met["demo: proxy's added time at c=1 (median of pairs), ms, 500x375"]  # 2 ms
    assert met["demo: handler pre+post / one full decode, 4000x3000"] is False  # 160 / 50
    assert met["demo: worker RSS growth after a 12 MP burst, MB"]  # 200
    assert met["demo: served masks = fp32 eager masks, 4000x3000"]
    assert met["demo: bulk, overlays / direct c=16, 500x375"]  # 0.95
    assert not met["demo: bulk, overlays, COCO / direct c=16, 500x375"]  # 0.85
    assert not any(t.startswith("256: served masks") for t in met)  # random weights: no masks
    assert met["demo: gain of lone_request_every_core (lone_ms, 500x375)"]
    assert not met["demo: gain of mixed_precision (lone_ms, 500x375)"]  # under 10%
    text = "\n".join(report.table(results))
    assert "x limit" in text and "MISSED" in text and "0.90" in text  # 36 / 40 in the table
    assert "0.85x direct at c=16" in text  # the bulk rows
    assert "gain  +48.0%  pays" in text and "gain   +5.0%  UNDER 10%" in text
    report.chart(results, tmp_path / "chart.png")
    with Image.open(tmp_path / "chart.png") as chart:
        assert chart.format == "PNG" and chart.height > chart.width / 2  # two rows of panels


def test_an_ablation_row_measures_the_switch_off_against_on(tiny_export):
    served = {"workers": 2, "batchSize": 2, "handler": {}}
    switch = ablation.Ablation("upsample_along_outlines", "images_per_s", "500x375", "load")
    row = ablation.measure(tiny_export, served, switch, rounds=2, seconds=0.2)
    assert row["on"] > 0 and row["off"] > 0
    assert row["gain"] == pytest.approx(row["on"] / row["off"] - 1, abs=0.01)
    assert row["pays"] == (row["gain"] >= ablation.GAIN_TO_KEEP)


def test_every_speed_switch_has_an_ablation_row():
    switches = {name for name, kind in get_type_hints(HandlerConfig).items() if kind is bool}
    assert switches == {row.switch for row in ablation.ABLATIONS}
