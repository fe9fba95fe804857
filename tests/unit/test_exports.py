"""An annotation tool's export as a training set (model_training/exports.py): Label Studio's
JSON (brush RLE, polygons) and COCO files turned into the Kaggle layout whole, or refused with
the task named and nothing written. The exports are made here as Label Studio writes them; the
real one's are read in tests/system/test_label_studio.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from handler.spec import CLASS_SETS
from model_training.exports import EXPORT_MARKER, ExportError, convert, is_export
from petseg.labelling import label_config, regions

CLASSES = [
    {"id": i, "name": n, "color": [0, 0, 0]}
    for i, n in enumerate(CLASS_SETS["multiclass"]["class_names"])
]
SIZE = (48, 64)


def labels_of(seed: int) -> np.ndarray:
    labels = np.zeros(SIZE, dtype=np.uint8)
    labels[4 + seed : 20 + seed, 5:25] = 1 + seed % 2
    if seed % 3 == 0:
        labels[30:44, 40:60] = 2 - seed % 2
    return labels


def task(index: int, folder: Path, tool: str = "brush", labels: np.ndarray | None = None) -> dict:
    """A Label Studio export's task: its photo uploaded, one annotation of ``labels``."""
    name = f"ab{index:02d}cd-pet{index}.jpg"
    Image.new("RGB", SIZE[::-1], (90, 120, 40 + index)).save(folder / name)
    project = label_config.read(label_config.template(CLASSES, tool), CLASSES)
    drawn = regions.results(labels_of(index) if labels is None else labels, project, 0)
    annotation = {"id": 100 + index, "result": drawn, "was_cancelled": False}
    annotation["updated_at"] = "2026-12-01T10:00:00Z"
    return {"id": index, "data": {"image": f"/data/upload/1/{name}"}, "annotations": [annotation]}


@pytest.fixture
def media(tmp_path) -> Path:
    folder = tmp_path / "media" / "upload" / "1"
    folder.mkdir(parents=True)
    return folder


def write_export(tmp_path: Path, tasks: list) -> Path:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    return path


def read_masks(out: Path) -> dict[int, np.ndarray]:
    """task id -> the mask written for it (00002-task-7.png)."""
    return {
        int(p.stem.rsplit("-", 1)[-1]): np.asarray(Image.open(p))
        for p in (out / "masks").glob("*.png")
    }


def test_a_brush_export_becomes_the_kaggle_layout_with_the_very_masks(tmp_path, media):
    tasks = [task(i, media) for i in range(5)]
    tasks.append({"id": 99, "data": {"image": "/data/upload/1/x.jpg"}, "annotations": []})
    out = tmp_path / "run" / "data"
    read = convert(write_export(tmp_path, tasks), out, "multiclass", images=media)
    assert (len(read.kept), read.unannotated, read.skipped) == (5, 1, {})
    for task_id, mask in read_masks(out).items():
        assert np.array_equal(mask, labels_of(task_id))
    rows = [(out / f"{s}.csv").read_text().split()[1:] for s in ("train", "val")]
    assert sorted(rows[0] + rows[1]) == sorted(read.kept) and rows[1]
    assert json.loads((out / EXPORT_MARKER).read_text())["kind"] == "label-studio"


def test_polygons_and_the_latest_of_several_annotations_are_read(tmp_path, media):
    tasks = [task(i, media, "polygon") for i in range(3)]
    older = task(0, media, labels=np.zeros(SIZE, np.uint8) + 1)["annotations"][0]
    tasks[0]["annotations"].append({**older, "id": 1, "updated_at": "2026-11-01T00:00:00Z"})
    out = tmp_path / "data"
    convert(write_export(tmp_path, tasks), out, "multiclass", images=media)
    for task_id, mask in read_masks(out).items():
        expected = labels_of(task_id)
        assert np.mean(mask == expected) > 0.97, task_id  # outlines on pixel corners


def test_a_binary_model_trains_on_a_cat_and_dog_project(tmp_path, media):
    out = tmp_path / "data"
    convert(write_export(tmp_path, [task(i, media) for i in range(3)]), out, "binary", media)
    for task_id, mask in read_masks(out).items():
        assert np.array_equal(mask, (labels_of(task_id) > 0).astype(np.uint8))


@pytest.mark.parametrize(
    ("breaks", "says"),
    [
        (
            lambda t: t["annotations"][0]["result"][0]["value"].update(brushlabels=["horse"]),
            "horse",
        ),
        (lambda t: t["annotations"][0].update(result=[]), "empty mask"),
        (lambda t: t["data"].update(image="/data/upload/1/gone.jpg"), "gone.jpg"),
        (lambda t: t["annotations"][0]["result"][0]["value"].update(rle=[1, 2, 3]), "decode"),
        (lambda t: t["annotations"][0]["result"][0].update(original_width=10), "10x48"),
    ],
)
def test_a_bad_task_stops_the_conversion_naming_it_and_nothing_is_written(
    tmp_path, media, breaks, says
):
    tasks = [task(i, media) for i in range(4)]
    breaks(tasks[2])
    out = tmp_path / "run" / "data"
    with pytest.raises(ExportError, match=says) as refused:
        convert(write_export(tmp_path, tasks), out, "multiclass", images=media)
    assert "task 2" in str(refused.value) and "--skip-bad-labels" in str(refused.value)
    assert not out.exists() and list(out.parent.iterdir()) == []  # no staging left either


def test_skipping_bad_tasks_says_how_many_and_keeps_the_rest(tmp_path, media):
    tasks = [task(i, media) for i in range(4)]
    tasks[1]["annotations"][0]["result"][0]["value"]["brushlabels"] = ["horse"]
    out = tmp_path / "data"
    read = convert(write_export(tmp_path, tasks), out, "multiclass", media, skip_bad=True)
    assert len(read.kept) == 3 and list(read.skipped) == ["task 1"]
    assert "skipped 1 bad tasks (task 1: label ['horse']" in read.summary()
    assert sorted(read_masks(out)) == [0, 2, 3]


def test_a_failed_conversion_leaves_the_previous_dataset_whole(tmp_path, media):
    out = tmp_path / "data"
    convert(write_export(tmp_path, [task(i, media) for i in range(3)]), out, "multiclass", media)
    before = sorted(p.name for p in out.rglob("*"))
    broken = [task(i, media) for i in range(3)]
    broken[0]["annotations"][0]["result"] = []
    with pytest.raises(ExportError):
        convert(write_export(tmp_path, broken), out, "multiclass", media)
    assert sorted(p.name for p in out.rglob("*")) == before


def test_a_coco_export_folder_reads_rle_and_polygons(tmp_path, media):
    folder = tmp_path / "coco-export"
    (folder / "images").mkdir(parents=True)
    images, annotations = [], []
    for index in range(3):
        name = f"images/pet{index}.jpg"
        Image.new("RGB", SIZE[::-1], (90, 100, 20)).save(folder / name)
        images.append({"id": index, "file_name": name, "height": SIZE[0], "width": SIZE[1]})
        labels = labels_of(index)
        for class_id in (1, 2):
            if not (labels == class_id).any():
                continue
            rle = coco_mask.encode(np.asfortranarray(labels == class_id, dtype=np.uint8))
            segmentation = {"size": rle["size"], "counts": rle["counts"].decode()}
            if index == 2:  # as Label Studio writes brush masks: polygons of the outline
                ys, xs = np.nonzero(labels == class_id)
                x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
                segmentation = [[x0, y0, x1, y0, x1, y1, x0, y1]]  # these masks are boxes
            annotations.append(
                {"id": len(annotations), "image_id": index, "category_id": class_id,
                 "segmentation": segmentation}
            )  # fmt: skip
    categories = [{"id": 1, "name": "Cat"}, {"id": 2, "name": "Dog"}]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    (folder / "result.json").write_text(json.dumps(coco))
    assert is_export(folder) and not is_export(media)
    out = tmp_path / "data"
    read = convert(folder, out, "multiclass")
    assert len(read.kept) == 3
    masks = sorted((out / "masks").glob("*.png"))
    for index, path in enumerate(masks):
        assert np.array_equal(np.asarray(Image.open(path)), labels_of(index)), path.name


def test_what_is_no_export_is_refused_in_words(tmp_path):
    (tmp_path / "notes.json").write_text('{"hello": 1}')
    with pytest.raises(ExportError, match="neither a Label Studio JSON export nor a COCO"):
        convert(tmp_path / "notes.json", tmp_path / "out", "multiclass")
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(ExportError, match="not a JSON export"):
        convert(tmp_path / "broken.json", tmp_path / "out", "multiclass")
    with pytest.raises(ExportError, match="at least 2"):
        convert(write_export(tmp_path, []), tmp_path / "out", "multiclass")
