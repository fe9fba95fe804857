"""The handler driven like TorchServe drives it, with a small fake context instead of a server."""

import io
import json
import logging
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from handler import metrics, threads
from handler.protocol import MODEL_VERSION_HEADER, OUTPUTS, REQUEST_ID_HEADER
from handler.settings import HandlerConfig
from tests.support import images
from tests.support.handler_context import handler_for, run
from tests.support.masks import from_polygons, from_rle


@pytest.fixture(scope="module")
def handler(tiny_export):
    h = handler_for(tiny_export)
    return h


def test_mixed_batch_answers_each_request_on_its_own(handler):
    rows = [
        {"body": images.jpeg(200, 150)},
        {"body": b""},
        {"body": "plain text"},
        {"data": images.png(90, 120)},
        {"body": images.truncated_jpeg()},
        {"body": images.png(1, 1)},
        {"body": images.png_claiming_size(30000, 30000)},
        {"file": images.exif_rotated_jpeg(160, 120)},
    ]
    answers, context = run(handler, rows)
    assert len(answers) == len(rows)
    expected_errors = {1: 400, 2: 415, 4: 400, 5: 400, 6: 413}
    assert {i: code for i, (code, _) in context.statuses.items()} == expected_errors
    for index, code in expected_errors.items():
        body = json.loads(answers[index])
        assert body["code"] == code and body["message"] == context.statuses[index][1]
        assert context.content_types[index] == "application/json"
    for index, size in {0: (200, 150), 3: (90, 120), 7: (120, 160)}.items():
        result = json.loads(answers[index])
        assert (result["width"], result["height"]) == size
        mask = images.from_base64(result["mask_png"])
        assert mask.mode == "P" and mask.size == size
        assert set(np.unique(np.asarray(mask))) <= {0, 1, 2}
        assert images.from_base64(result["overlay_jpeg"]).size == size
        assert result["batch_size"] == len(rows)
        assert context.content_types[index] == "application/json"
    assert context.metrics.recorded["PetsegBatchSize"] == 8
    assert context.metrics.recorded["PetsegRejectedRequests"] == 5


def test_each_request_is_logged_under_its_id_and_its_mask_measured(handler, caplog):
    rows = [{"body": images.jpeg(120, 90)}, {"body": b"junk"}, {"body": images.jpeg(64, 48)}]
    headers = {0: {REQUEST_ID_HEADER: "upload-1"}, 1: {REQUEST_ID_HEADER: "upload-2"}}
    with caplog.at_level(logging.INFO, logger="handler.petseg_handler"):
        answers, context = run(handler, rows, headers=headers)
    assert json.loads(answers[1])["request_id"] == "upload-2"
    expected = [
        r"request upload-1, petseg 1\.0: json of 120x90, batch of 3, foreground [\d.]+",
        r"request upload-2, petseg 1\.0: answered 415",
        r"request torchserve-2, petseg 1\.0: json of 64x48, batch of 3, foreground [\d.]+",
    ]
    lines = [r.getMessage() for r in caplog.records if r.name == "handler.petseg_handler"]
    assert len(lines) == 3 and all(map(re.fullmatch, expected, lines)), lines
    assert all(context.response_headers[i][MODEL_VERSION_HEADER] == "1.0" for i in range(3))

    # as TorchServe's metrics cache logged them (its own HandlerTime aside)
    emitted = [line for line in context.metrics.emitted if line[0] in metrics.DECLARED]
    assert all(dims[:3] == ["petseg", "1.0", "Model"] for _, _, _, dims, _ in emitted)
    masks = [(value, rid) for name, _, value, _, rid in emitted if name == metrics.FOREGROUND]
    assert [rid for _, rid in masks] == ["upload-1", "torchserve-2"]
    assert all(0 <= value <= 1 for value, _ in masks)
    counters = {(name, tuple(dims[3:])): value for name, _, value, dims, _ in emitted}
    assert counters[metrics.REJECTED, ()] == 1 and counters[metrics.BATCH_SIZE, ()] == 3
    assert counters[metrics.EMPTY_MASKS, ()] == sum(value == 0 for value, _ in masks)
    assert {key for key in counters if key[0] == metrics.CLASS_PRESENT} == {
        (metrics.CLASS_PRESENT, ("cat",)),
        (metrics.CLASS_PRESENT, ("dog",)),
    }


def test_result_describes_classes_and_found_regions(handler):
    (answer,), _ = run(handler, [{"body": images.jpeg()}])
    result = json.loads(answer)
    assert result["model"]["name"] == "petseg" and result["model"]["version"] == "1.0"
    assert [c["name"] for c in result["classes"]] == ["background", "cat", "dog"]
    assert result["classes"][1]["color"] == [255, 0, 0]
    labels = np.asarray(images.from_base64(result["mask_png"]))
    for found in result["found"]:
        assert found["fraction"] == pytest.approx((labels == found["id"]).mean(), abs=1e-5)
        x0, y0, x1, y1 = found["bbox"]
        assert (labels[y0:y1, x0:x1] == found["id"]).any()
    assert set(result["timings_ms"]) == {"preprocess", "inference", "postprocess"}


def test_binary_outputs_by_query_or_accept_header(handler):
    rows = [
        {"body": images.jpeg(64, 48), "output": "mask"},
        {"body": images.jpeg(64, 48), "output": b"overlay"},
        {"body": images.jpeg(64, 48)},
        {"body": images.jpeg(64, 48), "output": "svg"},
    ]
    answers, context = run(handler, rows, headers={2: {"Accept": "image/png"}})
    assert context.content_types[0] == context.content_types[2] == "image/png"
    assert Image.open(io.BytesIO(answers[0])).size == (64, 48)
    assert answers[0] == answers[2]
    assert context.content_types[1] == "image/jpeg"
    assert Image.open(io.BytesIO(answers[1])).format == "JPEG"
    assert context.statuses[3][0] == 400 and "output='svg'" in json.loads(answers[3])["message"]


def test_rle_and_polygons_carry_the_png_mask(handler):
    data = images.jpeg(120, 90)
    rows = [{"body": data, "output": "mask"}, {"body": data}, {"body": data, "tolerance": "0"}]
    headers = {1: {"Accept": OUTPUTS["rle"]}, 2: {"Accept": OUTPUTS["polygons"]}}
    (png, rle, shapes), context = run(handler, rows, headers=headers)
    assert [context.content_types[i] for i in (1, 2)] == [OUTPUTS["rle"], OUTPUTS["polygons"]]
    labels = np.asarray(Image.open(io.BytesIO(png)))
    present = [c for c in (1, 2) if (labels == c).any()]
    assert present, "the tiny model finds pets in this photo"
    rle, shapes = json.loads(rle), json.loads(shapes)
    assert rle["model"]["training_data"] == shapes["model"]["training_data"] == "synthetic"
    assert [m["id"] for m in rle["masks"]] == present
    for entry in rle["masks"]:
        assert np.array_equal(from_rle(entry["rle"]), labels == entry["id"])
        assert entry["area"] == np.count_nonzero(labels == entry["id"])
    assert shapes["type"] == "FeatureCollection" and shapes["tolerance"] == 0
    assert [f["properties"]["id"] for f in shapes["features"]] == present
    for feature in shapes["features"]:
        filled = from_polygons(feature["geometry"]["coordinates"], 90, 120)
        assert np.array_equal(filled, labels == feature["properties"]["id"])


def test_the_labels_answer_is_the_mask_png_with_the_rle_answer(handler):
    data = images.jpeg(120, 90)
    rows = [{"body": data, "output": "rle"}, {"body": data, "output": "labels"}]
    (rle, labelled), context = run(handler, rows)
    assert context.content_types[1] == OUTPUTS["labels"]
    rle, labelled = json.loads(rle), json.loads(labelled)
    png = images.from_base64(labelled.pop("mask_png"))
    assert png.mode == "P" and png.size == (120, 90)
    # the mean over pixels of the largest of 3 class probabilities: at least a third
    assert 1 / 3 < labelled.pop("confidence") <= 1
    assert labelled == rle  # the rest is the rle answer, field for field
    assert rle["masks"], "the tiny model finds pets in this photo"
    for entry in labelled["masks"]:
        assert np.array_equal(from_rle(entry["rle"]), np.asarray(png) == entry["id"])


@pytest.mark.parametrize("value", ["-1", "nan", "lots", "1000"])
def test_a_bad_tolerance_is_a_400(handler, value):
    rows = [{"body": images.jpeg(), "output": "polygons", "tolerance": value}]
    (answer,), context = run(handler, rows)
    assert context.statuses[0][0] == 400 and "tolerance" in json.loads(answer)["message"]


def test_a_batch_of_only_bad_requests_runs_no_model(handler):
    answers, context = run(handler, [{"body": b""}, {"nothing": "here"}])
    assert [code for code, _ in context.statuses.values()] == [400, 400]
    assert "no image file in the request" in json.loads(answers[1])["message"]


def test_same_image_same_mask_whatever_the_batch(handler):
    data = images.jpeg(120, 90)
    (alone,), _ = run(handler, [{"body": data}])
    batched, _ = run(handler, [{"body": images.png(50, 200)}, {"body": data}])
    alone, batched = json.loads(alone), json.loads(batched[1])
    # one network for every request: its precision does not depend on the load
    assert alone["model"]["precision"] == batched["model"]["precision"]
    a, b = (np.asarray(images.from_base64(answer["mask_png"])) for answer in (alone, batched))
    # other kernels for another batch size; this barely trained tiny model is less sure of its
    # pixels than the demo model
    assert (a == b).mean() > 0.99


SAMPLES = [
    images.jpeg(48, 32),
    images.png(40, 40),
    images.animated_gif(),
    images.truncated_jpeg(),
    images.png_with_bad_crc(),
    images.png(4, 4),
    images.jpeg_claiming_size(30000, 30000),
]
VALUES = st.one_of(
    st.binary(max_size=256),
    st.text(max_size=16),
    st.sampled_from(SAMPLES),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),  # a JSON body
)
ROWS = st.dictionaries(
    st.sampled_from(["body", "data", "file", "image", "output", "tolerance", "note"]),
    VALUES,
    max_size=3,
)
ACCEPTS = st.sampled_from([None, "", "image/png", "image/jpeg", "*/*", "text/html, image/png"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(ROWS, ACCEPTS), min_size=1, max_size=4))
def test_any_batch_gets_an_answer_per_request_and_only_client_errors(handler, batch):
    rows = [row for row, _ in batch]
    headers = {i: {"Accept": accept} for i, (_, accept) in enumerate(batch)}
    answers, context = run(handler, rows, headers)
    assert len(answers) == len(rows)
    for index, answer in enumerate(answers):
        if index in context.statuses:
            code, message = context.statuses[index]
            assert 400 <= code < 500 and json.loads(answer)["message"] == message
        elif context.content_types[index] == "application/json":
            result = json.loads(answer)
            assert images.from_base64(result["mask_png"]).size == (
                result["width"],
                result["height"],
            )
        else:
            assert Image.open(io.BytesIO(answer)).format in ("PNG", "JPEG")


def test_mixed_precision_masks_agree_with_fp32(handler, tiny_export):
    fp32 = handler_for(tiny_export, {"handler": {"mixed_precision": False}})
    rows = [{"body": images.jpeg(200 + 40 * i, 150)} for i in range(3)]
    mixed, _ = run(handler, rows)
    exact, _ = run(fp32, rows)
    assert json.loads(exact[0])["model"]["precision"] == "float32"
    for a, b in zip(mixed, exact, strict=True):
        masks = [np.asarray(images.from_base64(json.loads(x)["mask_png"])) for x in (a, b)]
        assert (masks[0] == masks[1]).mean() > 0.99


def test_unknown_handler_setting_is_refused():
    with pytest.raises(ValueError, match="unknown handler settings"):
        HandlerConfig.from_yaml({"max_pixels": 5})


def test_threads_are_a_share_of_the_cores_and_all_of_them_for_a_lone_request(
    tiny_export, monkeypatch, tmp_path
):
    import torch

    folder = tmp_path / "workers"
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    monkeypatch.setattr(threads, "_default_folder", lambda: folder)
    before = torch.get_num_threads()
    two = [{"body": images.jpeg()}, {"body": images.jpeg()}]
    try:
        with threads.idle_workers(3, folder):  # four workers alive on the machine
            h = handler_for(tiny_export)
            assert torch.get_num_threads() == 2
            run(h, [{"body": images.jpeg()}])
            assert torch.get_num_threads() == 8
            run(h, two)
            assert torch.get_num_threads() == 2
        run(h, two)  # the others stopped (`models scale 1`): the share follows at once
        assert torch.get_num_threads() == 8
    finally:
        torch.set_num_threads(before)


def test_describe_gives_the_model_card_only_as_torchserve_asks_for_it(handler):
    card = json.loads(handler.describe_handle())
    assert card["version"] == "1.0" and card["training_data"]["kind"] == "synthetic"
    assert "path" not in card["training_data"]
    asked = {0: {"describe": "True"}}
    (described,), _ = run(handler, [{}], headers=asked)
    assert json.loads(described)["name"] == "petseg"
    rows = [{"body": images.jpeg()}, {"body": images.jpeg()}]
    answers, context = run(handler, rows, headers=asked)
    assert [json.loads(a)["width"] for a in answers] == [160, 160] and not context.statuses


def test_a_big_photo_gets_a_full_size_mask_and_a_reduced_overlay(tiny_export):
    h = handler_for(tiny_export, {"handler": {"overlay_max_side": 600}})
    (answer,), _ = run(h, [{"body": images.jpeg(2400, 1000)}])
    result = json.loads(answer)
    assert (result["width"], result["height"]) == (2400, 1000)
    mask = np.asarray(images.from_base64(result["mask_png"]))
    assert mask.shape == (1000, 2400)
    assert images.from_base64(result["overlay_jpeg"]).size == (600, 250)  # 1/4
    assert result["found"]
    for found in result["found"]:  # the statistics are the full-size mask's
        x0, y0, x1, y1 = found["bbox"]
        inside = mask[y0:y1, x0:x1] == found["id"]
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
        assert abs((mask == found["id"]).mean() - found["fraction"]) < 1e-6
