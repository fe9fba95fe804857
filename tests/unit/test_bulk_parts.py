"""The parts of a bulk `petseg predict` that need no server: which photos the inputs name, the
journal a crash leaves behind, and COCO annotations as pycocotools reads them back."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from pycocotools.coco import COCO

from handler.rendering import rle_masks
from petseg.bulk import coco
from petseg.bulk.journal import Journal
from petseg.bulk.photos import collect, many
from petseg.bulk.predict import Options
from tests.support.masks import from_rle

CARD = {
    "name": "petseg",
    "version": "1.0",
    "classes": [
        {"id": 0, "name": "background"},
        {"id": 1, "name": "cat"},
        {"id": 2, "name": "dog"},
    ],
}


@pytest.fixture
def tree(tmp_path):
    """photos/{a.jpg, b/c.PNG, b/c.jpg, b/notes.txt, b/.hidden.jpg, .cache/x.jpg, out/old.png}"""
    root = tmp_path / "photos"
    for name in ("a.jpg", "b/c.PNG", "b/c.jpg", "b/notes.txt", "b/.hidden.jpg", ".cache/x.jpg"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    (root / "out").mkdir()
    (root / "out" / "old.png").write_bytes(b"x")
    return root


def test_a_folder_is_walked_its_photos_named_from_it_and_the_rest_listed(tree):
    found = collect([str(tree)], tree / "out")
    assert found.root == tree
    assert [p.name for p in found.photos] == ["a.jpg", "b/c.PNG"]
    assert [(p.name, owner.name) for p, owner in found.clashes] == [("b/c.jpg", "b/c.PNG")]
    assert found.ignored == ["b/.hidden.jpg", "b/notes.txt"]  # hidden folders not entered
    assert found.photos[1].mask(tree / "m") == tree / "m" / "b" / "c.png"
    assert found.photos[1].overlay(tree / "m") == tree / "m" / "b" / "c.overlay.jpg"


def test_files_and_globs_share_one_root_and_a_photo_named_twice_is_taken_once(
    tree, tmp_path, monkeypatch
):
    out = tmp_path / "labels"
    found = collect([str(tree / "a.jpg"), str(tree / "b" / "*.jpg"), str(tree / "a.jpg")], out)
    assert found.root == tree
    assert [p.name for p in found.photos] == ["a.jpg", "b/c.jpg"]
    assert not found.ignored  # files named or matched are sent whatever their name
    monkeypatch.chdir(tree)
    assert [p.name for p in collect(["**/*.jpg"], out).photos] == ["a.jpg", "b/c.jpg"]
    (tree / "out" / "a.overlay.jpg").write_bytes(b"x")  # an earlier run's, kept among the photos
    assert [p.name for p in collect(["**/*.jpg"], "out").photos] == ["a.jpg", "b/c.jpg"]


def test_inputs_that_name_nothing_and_outputs_among_the_photos_are_refused(tree):
    with pytest.raises(ValueError, match="no such file"):
        collect([str(tree / "missing.jpg")], tree / "out")
    with pytest.raises(ValueError, match="no file matches"):
        collect([str(tree / "*.webp")], tree / "out")
    with pytest.raises(ValueError, match="holds photos"):
        collect([str(tree)], tree)


def test_many_means_several_inputs_a_folder_or_a_glob(tree):
    assert not many([str(tree / "a.jpg")]) and not many([str(tree / "missing.jpg")])
    assert many([str(tree)]) and many([str(tree / "*.jpg")])
    assert many([str(tree / "a.jpg"), str(tree / "b" / "c.jpg")])


def record(name, digest="d1", **extra):
    return {"file": name, "sha256": digest, "overlay": False, "polygons": None, **extra}


def test_the_journal_keeps_the_latest_record_forgets_and_survives_a_torn_line(tmp_path):
    path = tmp_path / "journal.jsonl"
    with Journal(path, resume=False) as journal:
        journal.append(record("a.jpg", n=1))
        journal.append(record("b.jpg"))
        journal.append(record("a.jpg", "d2", n=2))
        journal.forget("b.jpg")
    with path.open("a") as out:
        out.write('{"file": "c.jpg", "sha2')  # killed mid-write
    with Journal(path, resume=True) as journal:
        assert {name: entry.sha256 for name, entry in journal.index.items()} == {"a.jpg": "d2"}
        journal.append(record("c.jpg"))
    with Journal(path, resume=True) as journal:
        done = list(journal.records({"a.jpg", "c.jpg"}))
    assert [(r["file"], r.get("n")) for r in done] == [("a.jpg", 2), ("c.jpg", None)]
    with Journal(path, resume=False) as journal:
        assert not journal.index and path.read_text() == ""  # started over


def labels(height=40, width=60):
    out = np.zeros((height, width), np.uint8)
    out[5:20, 10:30] = 1
    out[8:12, 15:20] = 0  # a hole
    out[30:35, 40:58] = 2
    out[2, 50] = 2  # a second region of the class
    return out


def test_annotations_are_exact_rle_with_area_and_bbox_per_class_present():
    found = coco.annotations(labels(), [1, 2, 3])
    assert [a["category_id"] for a in found] == [1, 2]
    for annotation in found:
        mask = labels() == annotation["category_id"]
        assert np.array_equal(from_rle(annotation["rle"]), mask)
        assert annotation["area"] == mask.sum()
        rows, cols = np.nonzero(mask)
        x, y = cols.min(), rows.min()
        assert annotation["bbox"] == [x, y, cols.max() - x + 1, rows.max() - y + 1]
        assert "polygons" not in annotation


def test_polygons_are_outer_rings_widest_first():
    dog = coco.annotations(labels(), [2], tolerance=0.0)[0]["polygons"]
    assert dog == [
        [40.0, 30.0, 58.0, 30.0, 58.0, 35.0, 40.0, 35.0],
        [50.0, 2.0, 51.0, 2.0, 51.0, 3.0, 50.0, 3.0],
    ]
    cat = coco.annotations(labels(), [1], tolerance=0.0)[0]["polygons"]
    assert len(cat) == 1 and len(cat[0]) == 8  # the hole is not a ring of its own


def test_the_coco_file_loads_in_pycocotools_and_gives_the_masks_back(tmp_path):
    out = tmp_path / "coco.json"
    with Journal(tmp_path / "journal.jsonl", resume=False) as journal:
        for name in ("b.jpg", "a.jpg", "empty.jpg"):
            found = coco.annotations(labels() * (name != "empty.jpg"), [1, 2])
            journal.append(record(name, width=60, height=40, annotations=found))
        names = {"a.jpg", "b.jpg", "empty.jpg"}
        assert coco.write(out, lambda: journal.records(names), CARD) == 3
    data = json.loads(out.read_text())
    assert data["categories"] == [
        {"id": 1, "name": "cat", "supercategory": ""},
        {"id": 2, "name": "dog", "supercategory": ""},
    ]
    assert [i["file_name"] for i in data["images"]] == ["a.jpg", "b.jpg", "empty.jpg"]
    assert all(
        a["iscrowd"] == 0 and isinstance(a["segmentation"]["counts"], str)
        for a in data["annotations"]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pycocotools vs numpy 2
        dataset = COCO(str(out))
        for image_id in (1, 2):
            for category in (1, 2):
                (annotation,) = dataset.loadAnns(dataset.getAnnIds([image_id], [category]))
                assert np.array_equal(dataset.annToMask(annotation), labels() == category)
    assert not dataset.getAnnIds([3])


def test_annotations_from_the_servers_rle_are_those_made_from_the_mask():
    labels = np.zeros((40, 60), np.uint8)
    labels[5:30, 10:25], labels[20:38, 30:58], labels[0, 59] = 1, 2, 2
    stats = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    answer = {"masks": rle_masks(labels, stats)}  # what the handler's labels answer holds
    assert coco.served_annotations(answer, [1, 2]) == coco.annotations(labels, [1, 2])
    assert coco.served_annotations(answer, [2]) == coco.annotations(labels, [2])
    with pytest.raises(ValueError, match="not COCO RLE"):
        coco.served_annotations({"masks": [{"id": 1}]}, [1])


@pytest.mark.parametrize(
    ("overlay", "coco_file", "tolerance", "output"),
    [
        (False, None, None, "mask"),
        (False, "coco.json", None, "labels"),  # the server's RLE: the client decodes nothing
        (False, "coco.json", 1.0, "mask"),  # polygons are traced from the decoded mask
        (True, "coco.json", None, "json"),
    ],
)
def test_a_run_asks_for_no_more_than_it_writes(tmp_path, overlay, coco_file, tolerance, output):
    coco_path = tmp_path / coco_file if coco_file else None
    options = Options(tmp_path, overlay, coco_path, tolerance, 16, False, None)
    assert options.output == output
