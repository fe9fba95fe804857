"""`petseg predict` on a folder of photos, against a real TorchServe: the masks mirror the tree,
the COCO file gives the served masks back through pycocotools, bad photos are named and leave
nothing behind, and an interrupted run resumes without sending again what it did."""

from __future__ import annotations

import json
import signal
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from handler.spec import ModelSpec
from petseg.serving.launcher import Instance
from tests.support import images
from tests.support.cli import petseg, started
from tests.support.photos import (
    class_map,
    coco_images,
    mask_path,
    pet,
    photo_tree,
    report,
    write,
)


def predict(server: Instance, *argv: str):
    return petseg("--workdir", str(server.workdir), "predict", *argv)


def journal_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]


def coco_masks(path: Path) -> dict[str, dict[int, np.ndarray]]:
    """file name -> category id -> the union of its annotations' masks, by pycocotools."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pycocotools 2.0 vs numpy 2
        dataset = COCO(str(path))
        found = {}
        for image in dataset.loadImgs(dataset.getImgIds()):
            found[image["file_name"]] = masks = {}
            for annotation in dataset.loadAnns(dataset.getAnnIds(imgIds=[image["id"]])):
                assert annotation["iscrowd"] == 0
                category = annotation["category_id"]
                assert category not in masks  # one annotation per class found
                masks[category] = dataset.annToMask(annotation).astype(bool)
    return found


@pytest.fixture
def tree(tmp_path) -> Path:
    """Photos in nested folders, a copy of one under another name, a truncated JPEG, a text
    file named .jpg, a link to a file that is gone, and notes that are no photo by their name."""
    root = tmp_path / "photos"
    photo_tree(root, 30)
    write(root, "garden/copy-of-pet001.jpg", (root / "garden/pet001.jpg").read_bytes())
    write(root, "garden/2025/broken.jpg", images.truncated_jpeg())
    write(root, "sofa/not-a-photo.jpg", b"a shopping list, not a photo\n")
    (root / "sofa" / "gone.jpg").symlink_to(root / "moved-away.jpg")  # unreadable
    write(root, "README.txt", b"photos of our pets\n")
    return root


def test_a_folder_gives_mirrored_masks_a_coco_file_and_names_each_failure(
    server, tiny_export, tree, tmp_path
):
    out = tmp_path / "labels"
    done = predict(
        server, str(tree), "--out-dir", str(out), "--overlay", "--coco", str(out / "coco.json")
    )
    assert done.returncode == 1, done.stderr  # three photos failed, the run went on
    assert "garden/2025/broken.jpg: HTTP 400" in done.stderr
    assert "sofa/not-a-photo.jpg: HTTP 415: not a supported image" in done.stderr
    assert "sofa/gone.jpg: cannot read it: No such file" in done.stderr
    summary = report(out)
    assert (summary["photos"], summary["segmented"], summary["failed"]) == (34, 31, 3)
    assert summary["ignored"] == ["README.txt"] and summary["root"] == str(tree)
    assert {(f["path"], f["status"]) for f in summary["failures"]} == {
        (str(tree / "garden/2025/broken.jpg"), 400),
        (str(tree / "sofa/not-a-photo.jpg"), 415),
        (str(tree / "sofa/gone.jpg"), None),
    }
    for failed in ("garden/2025/broken", "sofa/not-a-photo", "sofa/gone"):
        assert not (out / f"{failed}.png").exists()
        assert not (out / f"{failed}.overlay.jpg").exists()

    good = sorted(
        str(p.relative_to(tree))
        for p in tree.rglob("*")
        if p.suffix in (".jpg", ".png")
        and p.exists()
        and p.name not in ("broken.jpg", "not-a-photo.jpg")
    )
    for name in good:
        with Image.open(tree / name) as photo, Image.open(out / f"{name[:-4]}.overlay.jpg") as ov:
            assert class_map(mask_path(out, name)).shape == (photo.height, photo.width)
            assert ov.format == "JPEG" and ov.size == photo.size
    original, copy = (class_map(out / f"garden/{n}.png") for n in ("pet001", "copy-of-pet001"))
    assert np.mean(original == copy) > 0.99  # the same photo twice: two images, the same mask

    served = coco_masks(out / "coco.json")
    assert sorted(served) == good
    classes = ModelSpec.load(tiny_export).class_names
    categories = json.loads((out / "coco.json").read_text())["categories"]
    assert [(c["id"], c["name"]) for c in categories] == list(enumerate(classes))[1:]
    for name, masks in served.items():
        labels = class_map(mask_path(out, name))
        for class_id in range(1, len(classes)):
            expected = labels == class_id
            assert np.array_equal(masks.get(class_id, np.zeros_like(expected)), expected), name
    assert sum(len(masks) for masks in served.values()) >= len(good) // 2  # pets were found


def test_resume_sends_only_what_is_left_and_redoes_what_changed(server, tmp_path):
    photos, out = tmp_path / "photos", tmp_path / "labels"
    names = photo_tree(photos, 10)
    coco = ("--coco", str(out / "coco.json"))
    trial = predict(server, str(photos), "--out-dir", str(out), "--limit", "4", *coco)
    assert trial.returncode == 0, trial.stderr
    assert (report(out)["segmented"], report(out)["not_done"]) == (4, 6)
    first = {name: mask_path(out, name).stat().st_mtime_ns for name in names[:4]}
    assert not any(mask_path(out, name).exists() for name in names[4:])

    rest = predict(server, str(photos), "--out-dir", str(out), "--resume", *coco)
    assert rest.returncode == 0, rest.stderr
    assert (report(out)["already_done"], report(out)["segmented"]) == (4, 6)
    assert [r["file"] for r in journal_lines(out)].count(names[0]) == 1  # sent once
    assert len(journal_lines(out)) == 10
    assert {name: mask_path(out, name).stat().st_mtime_ns for name in names[:4]} == first

    changed, spoiled, unwritten = names[0], names[1], names[2]
    write(photos, changed, pet(99))  # 300x200, another size than before
    write(photos, spoiled, b"no longer a photo")
    mask_path(out, unwritten).unlink()
    again = predict(server, str(photos), "--out-dir", str(out), "--resume", *coco)
    assert again.returncode == 1 and f"{spoiled}: HTTP 415" in again.stderr
    summary = report(out)
    assert (summary["already_done"], summary["segmented"], summary["failed"]) == (7, 2, 1)
    assert class_map(mask_path(out, changed)).shape == (200, 300)
    assert not mask_path(out, spoiled).exists()  # a failed photo keeps no stale mask
    listed = coco_images(out)
    assert sorted(listed) == sorted(set(names) - {spoiled})
    assert (listed[changed]["width"], listed[changed]["height"]) == (300, 200)


def test_a_coco_file_asked_for_later_has_the_photos_done_again(server, tmp_path):
    photos, out = tmp_path / "photos", tmp_path / "labels"
    names = photo_tree(photos, 4)
    assert predict(server, str(photos), "--out-dir", str(out)).returncode == 0
    assert all(record["annotations"] is None for record in journal_lines(out))  # none made
    coco = ("--out-dir", str(out), "--coco", str(out / "coco.json"), "--resume")
    later = predict(server, str(photos), *coco)
    assert later.returncode == 0, later.stderr
    assert (report(out)["already_done"], report(out)["segmented"]) == (0, 4)
    assert sorted(coco_images(out)) == names
    again = predict(server, str(photos), *coco)
    assert (again.returncode, report(out)["already_done"], report(out)["segmented"]) == (0, 4, 0)


def test_ctrl_c_keeps_what_is_done_and_resume_completes_it(server, tmp_path):
    photos, out = tmp_path / "photos", tmp_path / "labels"
    distinct = [pet(seed) for seed in range(3)]
    for index in range(150):  # few distinct photos under many names
        write(photos, f"batch{index // 50}/{index:03}.jpg", distinct[index % 3])
    argv = ["--workdir", str(server.workdir), "predict", str(photos), "--out-dir", str(out)]
    argv += ["--coco", str(out / "coco.json"), "--concurrency", "2"]
    run = started(*argv)
    deadline = time.monotonic() + 120
    journal = out / "journal.jsonl"
    while not journal.exists() or journal.read_text().count("\n") < 3:
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.02)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130 and "stopping" in stderr, stderr

    summary = report(out)
    done = summary["segmented"]
    assert summary["interrupted"] and summary["not_done"] == 150 - done > 0
    assert len(journal_lines(out)) == done == len(list(out.rglob("*.png")))
    assert len(coco_images(out)) == done

    resumed = petseg(*argv, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (report(out)["already_done"], report(out)["segmented"]) == (done, 150 - done)
    assert len(coco_images(out)) == 150


def test_polygons_for_tools_that_want_them(server, tmp_path):
    photos, out = tmp_path / "photos", tmp_path / "labels"
    names = photo_tree(photos, 8)
    argv = ["--out-dir", str(out), "--coco", str(out / "coco.json"), "--coco-polygons"]
    done = predict(server, str(photos), *argv, "--tolerance", "0")
    assert done.returncode == 0, done.stderr
    annotations = json.loads((out / "coco.json").read_text())["annotations"]
    assert annotations and all(isinstance(a["segmentation"], list) for a in annotations)
    filled = coco_masks(out / "coco.json")
    assert sorted(filled) == names
    for name, masks in filled.items():
        labels = class_map(mask_path(out, name))
        for class_id, mask in masks.items():
            # the outer rings along the pixel edges: every served pixel, holes filled
            assert np.all(mask[labels == class_id]), name


def test_through_the_web_api(server, proxy, tmp_path):
    photos, out = tmp_path / "photos", tmp_path / "labels"
    names = photo_tree(photos, 6)
    write(photos, "broken.jpg", images.truncated_jpeg())
    done = predict(server, str(photos), "--url", proxy, "--out-dir", str(out), "--overlay")
    assert done.returncode == 1 and "broken.jpg: HTTP 400" in done.stderr
    assert report(out)["target"] == proxy and report(out)["segmented"] == 6
    for name in names:
        assert class_map(mask_path(out, name)).ndim == 2
        assert (out / f"{name[:-4]}.overlay.jpg").is_file()
