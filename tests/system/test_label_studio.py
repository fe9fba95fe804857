"""The labelling loop in the real Label Studio (bench/label_studio.py): a brush project
pre-annotated by `petseg label-studio serve` through the session's TorchServe, the predictions
read back through Label Studio's API and decoded, turned into annotations, exported, trained on,
and the model served as a new version; the bulk tasks file imported as Label Studio imports it;
and the pre-annotation as an annotator sees it, in a real Chromium (the picture docs/labelling.md
shows)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests
from label_studio_sdk.converter.brush import decode_rle
from PIL import Image

from bench import label_studio
from bench.inputs import pet_photo
from bench.label_studio import BACKEND_PASSWORD, BACKEND_USER
from petseg.packaging.archive import build_archive
from tests.support.browser import chromium
from tests.support.cli import petseg
from tests.support.photos import class_map, mask_path, photo_tree
from tests.support.training import tiny_train_argv

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "label-studio.png"
"""The picture docs/labelling.md shows: rewritten by every run, so it cannot go stale."""
PHOTOS = 6
SAME_PIXELS = 0.995
OUTLINED_PIXELS = 0.9
"""Label Studio's brush-to-COCO traces each mask into polygons, which lose pixels along its
edges: on these small photos as low as 94.0% of pixels agreed."""


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    root = tmp_path_factory.mktemp("label-studio")
    with label_studio.running(root / "data", root / "label-studio.log") as running:
        yield running


@pytest.fixture(scope="module")
def backend(studio, server, tmp_path_factory):
    """`petseg label-studio serve` for the session's TorchServe, with a personal access token."""
    log = tmp_path_factory.mktemp("backend") / "backend.log"
    with label_studio.backend(server.workdir, studio, log) as url:
        yield url


@pytest.fixture(scope="module")
def photos(tmp_path_factory, server) -> tuple[Path, Path, list[str]]:
    """Pet photos and petseg's own masks of them (`petseg predict`), by name."""
    root = tmp_path_factory.mktemp("pets")
    names = [Path(n).name for n in photo_tree(root / "tree", PHOTOS)]
    flat = root / "photos"
    flat.mkdir()
    for path in (root / "tree").rglob("pet*"):
        path.rename(flat / path.name)
    done = petseg(
        "--workdir", str(server.workdir), "predict", str(flat), "--out-dir", str(root / "masks")
    )
    assert done.returncode == 0, done.stderr
    return flat, root / "masks", sorted(names)


def _config(server, *extra: str) -> str:
    done = petseg("--workdir", str(server.workdir), "label-studio", "config", *extra)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _decoded(region: dict) -> np.ndarray:
    height, width = region["original_height"], region["original_width"]
    return decode_rle(region["value"]["rle"]).reshape(height, width, 4)[:, :, 3] > 0


def _label_map(regions: list[dict], classes: dict[str, int], shape: tuple[int, int]) -> np.ndarray:
    labels = np.zeros(shape, dtype=np.uint8)
    for region in regions:
        labels[_decoded(region)] = classes[region["value"]["brushlabels"][0]]
    return labels


def test_label_studio_pre_annotates_with_petseg_and_the_corrections_train_the_next_version(
    studio, backend, photos, server, tmp_path
):
    folder, masks, names = photos
    config = _config(server)
    project = studio.project("pets", config)
    tasks = studio.import_photos(project, [folder / name for name in names])
    assert sorted(tasks.values()) == names
    studio.connect(project, backend)
    studio.retrieve_predictions(project)

    card = server.client().model_card()
    classes = {c["name"]: int(c["id"]) for c in card["classes"]}
    for task, name in tasks.items():
        predictions = studio.predictions(task)
        assert len(predictions) == 1, (name, predictions)
        prediction = predictions[0]
        assert prediction["model_version"] == card["version"]
        assert 0.0 < prediction["score"] <= 1.0
        regions = prediction["result"]
        assert all(r["type"] == "brushlabels" and r["from_name"] == "tag" for r in regions)
        assert len({r["value"]["brushlabels"][0] for r in regions}) == len(regions)  # one a class
        ours = class_map(mask_path(masks, name))
        theirs = _label_map(regions, classes, ours.shape)
        assert np.mean(theirs == ours) >= SAME_PIXELS, name
        # An annotator accepts the pre-annotation (with the brush it is what they would edit).
        annotation = {"result": regions, "was_cancelled": False, "ground_truth": False}
        studio.api("POST", f"/api/tasks/{task}/annotations/", expect=201, json=annotation)

    # Exported as a user downloads it: the file Label Studio sends.
    exported = studio.api("GET", f"/api/projects/{project}/export?exportType=JSON")
    (tmp_path / "export.json").write_bytes(exported)
    coco = zipfile.ZipFile(
        io.BytesIO(studio.api("GET", f"/api/projects/{project}/export?exportType=BRUSH_TO_COCO"))
    )
    coco.extractall(tmp_path / "coco-export")

    # The export trains the next version: its masks are the annotations', whole.
    run = tmp_path / "run"
    argv = tiny_train_argv(
        tmp_path / "export.json", run, "--epochs", "1", "--encoder-weights", "none"
    )
    trained = petseg("train", *argv, "--images", str(studio.media(project)), timeout=600)
    assert trained.returncode == 0, trained.stderr
    assert f"{PHOTOS} annotated photos" in trained.stdout + trained.stderr
    trained_on = sorted((run / "data" / "masks").iterdir())
    assert len(trained_on) == PHOTOS
    for path in trained_on:  # 00003-task-12.png: the fourth sample, from task 12
        expected = class_map(mask_path(masks, tasks[int(path.stem.rsplit("-", 1)[-1])]))
        assert np.mean(np.asarray(Image.open(path)) == expected) >= SAME_PIXELS, path.name

    coco_run = tmp_path / "coco-run"
    argv = tiny_train_argv(
        tmp_path / "coco-export", coco_run, "--epochs", "1", "--encoder-weights", "none"
    )
    trained = petseg("train", *argv, "--images", str(studio.media(project)), timeout=600)
    assert trained.returncode == 0, trained.stderr
    coco_masks = sorted((coco_run / "data" / "masks").iterdir())
    assert len(coco_masks) == PHOTOS
    for path in coco_masks:  # 00000-image-0-3fa2b1c0-pet001-png.png, from pet001.png
        name, suffix = path.stem.rsplit("-", 2)[1:]
        expected = class_map(mask_path(masks, f"{name}.{suffix}"))
        same = np.mean(np.asarray(Image.open(path)) == expected)
        assert same >= OUTLINED_PIXELS, (path.name, same)

    exported_model = tmp_path / "export"
    argv = ["--checkpoint", str(run / "best.pt"), "--out", str(exported_model), "--version", "2.0"]
    done = petseg("export", *argv)
    assert done.returncode == 0, done.stderr
    build_archive(exported_model, server.model_store, name="petseg-labelled", version="2.0")
    client = server.client()
    client.register("petseg-labelled.mar", workers=1)
    try:
        answer = client.predict((folder / names[0]).read_bytes(), version="2.0")
        assert answer.status_code == 200 and answer.json()["model"]["version"] == "2.0"
    finally:
        client.unregister("2.0")


def test_the_bulk_tasks_file_imports_with_its_predictions(studio, photos, server, tmp_path):
    folder, masks, _ = photos
    tasks_file = tmp_path / "tasks.json"
    argv = [
        "--workdir",
        str(server.workdir),
        "predict",
        str(folder),
        "--out-dir",
        str(tmp_path / "out"),
    ]
    done = petseg(*argv, "--label-studio", str(tasks_file))
    assert done.returncode == 0, done.stderr
    project = studio.project("bulk", _config(server))
    imported = json.loads(tasks_file.read_text())
    studio.api("POST", f"/api/projects/{project}/import", expect=201, json=imported)
    tasks = studio.tasks(project)
    assert len(tasks) == PHOTOS
    classes = {c["name"]: int(c["id"]) for c in server.client().model_card()["classes"]}
    for task in tasks:
        name = Path(task["data"]["image"].split("?d=")[-1]).name
        (prediction,) = studio.predictions(task["id"])
        ours = class_map(mask_path(masks, name))
        assert np.mean(_label_map(prediction["result"], classes, ours.shape) == ours) >= SAME_PIXELS


def test_wrong_credentials_and_a_config_without_the_classes_are_refused_in_words(
    studio, backend, server
):
    task = {"id": 1, "data": {"image": "/data/upload/1/x.jpg"}}
    body = {"tasks": [task], "label_config": _config(server)}
    refused = requests.post(
        f"{backend}/predict", json=body, auth=(BACKEND_USER, "wrong"), timeout=30
    )
    assert refused.status_code == 401 and "basic-auth" in refused.json()["error"]
    auth = (BACKEND_USER, BACKEND_PASSWORD)
    flowers = (
        '<View><Image name="image" value="$image"/><BrushLabels name="tag" toName="image">'
        '<Label value="rose"/></BrushLabels></View>'
    )
    unusable = requests.post(f"{backend}/setup", json={"schema": flowers}, auth=auth, timeout=30)
    assert unusable.status_code == 422 and "none of the model's classes" in unusable.json()["error"]
    # A task whose image Label Studio does not have (it answers 500 for that, not 404): an empty
    # prediction saying so, and the backend's answer is no 5xx.
    answer = requests.post(f"{backend}/predict", json=body, auth=auth, timeout=60)
    assert answer.status_code == 200
    (result,) = answer.json()["results"]
    assert (
        result["result"] == []
        and "task 1" in result["error"]
        and "answered HTTP 500" in result["error"]
    )


def test_a_polygon_project_gets_polygons_and_a_task_that_is_no_photo_gets_its_error(
    studio, backend, photos, server, tmp_path
):
    folder, masks, names = photos
    shopping = tmp_path / "shopping.jpg"
    shopping.write_bytes(b"a shopping list, not a photo\n")
    project = studio.project("outlines", _config(server, "--polygons"))
    tasks = studio.import_photos(project, [folder / names[0], shopping])
    studio.connect(project, backend)
    studio.retrieve_predictions(project)
    by_name = {name: studio.predictions(task) for task, name in tasks.items()}
    (outlined,) = by_name[names[0]]
    labels = class_map(mask_path(masks, names[0]))
    assert outlined["result"] and outlined["model_version"] == "1.0"
    for region in outlined["result"]:
        assert region["type"] == "polygonlabels" and region["value"]["closed"]
        points = np.asarray(region["value"]["points"]) * [
            labels.shape[1] / 100,
            labels.shape[0] / 100,
        ]
        assert points.min() >= 0 and (points <= labels.shape[::-1]).all()
    # The text file got an empty prediction (its error is in the backend's answer and log), and
    # it did not cost the photo beside it its own.
    (nothing,) = by_name["shopping.jpg"]
    assert nothing["result"] == []


REGION_LABELS = (
    "return [...document.querySelectorAll('.lsf-outliner-item__title')]"
    ".map(e => e.innerText.trim())"
)
"""The labels of the regions panel's entries (Label Studio 1.23's outliner)."""
IMAGE_LOADED = (
    "return [...document.querySelectorAll('img')].some(i => i.complete && i.naturalWidth == 500)"
)


def test_the_annotator_sees_petseg_s_pre_annotation_in_label_studio(
    studio, backend, server, tmp_path
):
    photo = tmp_path / "pet.jpg"
    photo.write_bytes(pet_photo(500, 375, seed=3))
    project = studio.project("shown", _config(server))
    (task,) = studio.import_photos(project, [photo])
    studio.connect(project, backend)
    studio.retrieve_predictions(project)
    (prediction,) = studio.predictions(task)
    found = sorted(r["value"]["brushlabels"][0] for r in prediction["result"])
    assert found, "the tiny model finds a pet in this photo"
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium(tmp_path / "chromium", 1400, 800)
    try:
        driver.get(f"{studio.url}/user/login/")
        driver.find_element("name", "email").send_keys(label_studio.EMAIL)
        driver.find_element("name", "password").send_keys(label_studio.PASSWORD)
        driver.find_element("css selector", "button[type=submit]").click()
        WebDriverWait(driver, 60).until(lambda d: "/user/login" not in d.current_url)
        driver.get(f"{studio.url}/projects/{project}/data?task={task}")
        # Its regions panel lists petseg's regions, and only those: no class it did not find.
        WebDriverWait(driver, 120).until(
            lambda d: d.execute_script(IMAGE_LOADED) and d.execute_script(REGION_LABELS),
            "Label Studio never showed the photo with the pre-annotation's regions",
        )
        assert sorted(driver.execute_script(REGION_LABELS)) == found
        assert f"{prediction['score']:.2%}" in driver.page_source  # the prediction's score
        driver.save_screenshot(str(SCREENSHOT))
    finally:
        driver.quit()
