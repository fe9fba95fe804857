"""An annotation tool's export as a training set: Label Studio's JSON (brush RLE or polygons) or
a COCO file (Label Studio's COCO export, `petseg predict --coco`, CVAT's...).

    petseg train --data export.json [--images DIR] --out runs/v2    Label Studio JSON
    petseg train --data coco-export/ --out runs/v2                  a folder with result.json

The export is read whole and turned into the Kaggle layout (images/, masks/ of class ids,
train/val/test.csv) in the run's folder, ``OUT/data``, which the usual reader then trains from:
one dataset format in the training loop, and the masks trained on can be looked at as files.
Labels are matched to the model's classes by name (cat, dog; pet for binary; background is
0), so an export of any project whose labels carry those names trains petseg.

Nothing is half-read: a task with an unknown label, an empty mask, a missing image or an RLE
that does not decode stops the conversion with its task named, and nothing is written, unless
``--skip-bad-labels``, which leaves such tasks out and says how many. Tasks nobody annotated and
cancelled annotations are left out and counted, not errors. The folder is written beside and
renamed into place, so a failed or interrupted conversion never leaves a partial dataset.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
from PIL import Image

from handler.spec import CLASS_SETS

EXPORT_MARKER = "petseg-export.json"
"""Written into the converted folder: what it was made from (the model card's training data)."""
COCO_NAMES = ("result.json", "result_coco.json", "annotations.json", "coco.json")
"""The COCO file of an export folder: Label Studio's names first (COCO, Brush labels to COCO)."""
REGION_KEYS = {"brushlabels": "brush", "polygonlabels": "polygon"}
UNSAFE = re.compile(r"[^A-Za-z0-9_]+")
"""What a sample's file name does not keep of its task's name: "image 3 (a/b.jpg)" is
"image-3-a-b-jpg" (no dot: the Kaggle reader takes what follows one as the suffix)."""


class ExportError(ValueError):
    """The export cannot be trained on as it is; the message names the task or file."""


@dataclass
class Conversion:
    """What a conversion read: the samples it wrote and those it left out, and why."""

    kept: list[str] = field(default_factory=list)
    unannotated: int = 0
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{len(self.kept)} annotated photos"]
        if self.unannotated:
            parts.append(f"{self.unannotated} tasks without an annotation left out")
        if self.skipped:
            examples = "; ".join(f"{k}: {v}" for k, v in list(self.skipped.items())[:3])
            parts.append(f"skipped {len(self.skipped)} bad tasks ({examples})")
        return ", ".join(parts)


def is_export(path: Path) -> bool:
    """A JSON file, or a folder holding a COCO file and no dataset layout of its own."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() == ".json"
    return path.is_dir() and _coco_file(path) is not None


def _coco_file(folder: Path) -> Path | None:
    return next((folder / n for n in COCO_NAMES if (folder / n).is_file()), None)


def class_ids(classes: str) -> dict[str, int]:
    """Label name (lower case) -> class id, for the model's class set."""
    names = CLASS_SETS[classes]["class_names"]
    ids = {name: index for index, name in enumerate(names)}
    if classes == "binary":  # a cat/dog project trains a pet model too
        ids.update(cat=1, dog=1)
    return ids


def convert(
    export: Path,
    out: Path,
    classes: str,
    images: Path | None = None,
    skip_bad: bool = False,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Conversion:
    """Write the export as the Kaggle layout into ``out`` (replaced whole); what was read."""
    export = Path(export)
    if not export.exists():
        raise ExportError(f"{export} does not exist")
    coco = _coco_file(export) if export.is_dir() else None
    if export.is_dir() and coco is None:
        raise ExportError(f"{export} holds no COCO file ({', '.join(COCO_NAMES)})")
    source = coco or export
    try:
        document = json.loads(source.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{source} is not a JSON export: {exc}") from exc
    finder = ImageFinder(images or source.parent)
    ids = class_ids(classes)
    if isinstance(document, list):
        samples = label_studio_samples(document, finder, ids)
    elif isinstance(document, dict) and {"images", "annotations"} <= document.keys():
        samples = coco_samples(document, finder, ids, source.parent)
    else:
        raise ExportError(f"{source} is neither a Label Studio JSON export nor a COCO file")
    conversion = Conversion()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        (staging / "images").mkdir()
        (staging / "masks").mkdir()
        for name, read in samples:
            if read is None:
                conversion.unannotated += 1
                continue
            try:
                photo, labels = read()
            except ExportError as exc:
                if not skip_bad:
                    hint = "(--skip-bad-labels leaves such tasks out)"
                    raise ExportError(f"{source}: {name}: {exc} {hint}") from exc
                conversion.skipped[name] = str(exc)
                continue
            stem = f"{len(conversion.kept):05d}-{UNSAFE.sub('-', name).strip('-')}"
            shutil.copyfile(photo, staging / "images" / f"{stem}.jpg")  # read by content
            Image.fromarray(labels).save(staging / "masks" / f"{stem}.png")
            conversion.kept.append(stem)
        if len(conversion.kept) < 2:
            raise ExportError(f"{source}: {conversion.summary()}: at least 2 are needed")
        _write_splits(staging, conversion.kept, val_fraction, seed)
        kind = "label-studio" if isinstance(document, list) else "coco"
        marker = {"kind": kind, "export": str(source.resolve()), "read": conversion.summary()}
        (staging / EXPORT_MARKER).write_text(json.dumps(marker, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return conversion


def _write_splits(folder: Path, stems: list[str], val_fraction: float, seed: int) -> None:
    """train.csv and val.csv by ``seed`` (at least one photo each); test.csv is val's photos:
    an export is one pool of corrected photos, kept apart from training only as validation."""
    order = sorted(stems)
    random.Random(seed).shuffle(order)
    n_val = min(len(order) - 1, max(1, round(len(order) * val_fraction)))
    rows = {"train": order[n_val:], "val": order[:n_val], "test": order[:n_val]}
    for split, chosen in rows.items():
        (folder / f"{split}.csv").write_text("Image\n" + "".join(f"{s}\n" for s in chosen))


class ImageFinder:
    """A task's photo on disk: its URL's file name under the images folder (searched once)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._by_name: dict[str, Path] | None = None

    def find(self, reference: str) -> Path:
        name = _file_name(reference)
        direct = self.root / reference
        if not reference.startswith(("/", "http:", "https:")) and direct.is_file():
            return direct
        if self._by_name is None:
            self._by_name = {}
            for path in sorted(self.root.rglob("*")):
                if path.is_file():
                    self._by_name.setdefault(path.name, path)
        if name not in self._by_name:
            raise ExportError(f"its image {reference!r} is not under {self.root} (--images DIR)")
        return self._by_name[name]


def _file_name(reference: str) -> str:
    """The file name a task's image URL ends in: /data/upload/3/ab12-cat.jpg -> ab12-cat.jpg;
    Label Studio's local files, /data/local-files/?d=photos/cat.jpg -> cat.jpg."""
    parts = urlsplit(reference)
    path = parse_qs(parts.query).get("d", [parts.path])[0]
    return Path(unquote(path)).name


Reader = Any  # () -> (photo path, H x W uint8 class ids), or ExportError
Samples = Iterator[tuple[str, Reader | None]]


def label_studio_samples(tasks: list[Any], finder: ImageFinder, ids: dict[str, int]) -> Samples:
    """Per task: its name and how to read it (None when it has no annotation to train on)."""
    for index, task in enumerate(tasks):
        if not isinstance(task, dict):
            yield f"task #{index}", _failing("it is not a task object")
            continue
        name = f"task {task.get('id', f'#{index}')}"
        annotations = [
            a
            for a in task.get("annotations") or []
            if isinstance(a, dict) and not a.get("was_cancelled")
        ]
        if not annotations:
            yield name, None
            continue
        latest = max(annotations, key=lambda a: (str(a.get("updated_at", "")), a.get("id", 0)))
        yield name, _task_reader(task, latest, finder, ids)


def _failing(message: str) -> Reader:
    def read() -> Any:
        raise ExportError(message)

    return read


def _task_reader(task: dict, annotation: dict, finder: ImageFinder, ids: dict[str, int]) -> Reader:
    def read() -> tuple[Path, np.ndarray]:
        data = task.get("data") or {}
        references = [v for v in data.values() if isinstance(v, str)]
        if not references:
            raise ExportError("its data names no image")
        photo = finder.find(data.get("image", references[0]))
        with Image.open(photo) as image:
            width, height = image.size
        labels = np.zeros((height, width), dtype=np.uint8)
        regions = [r for r in annotation.get("result") or [] if r.get("type") in REGION_KEYS]
        if not regions:
            raise ExportError("its annotation has no brush or polygon region (an empty mask)")
        for region in regions:
            value, key = region.get("value") or {}, region["type"]
            names = value.get(key) or []
            unknown = [n for n in names if str(n).lower() not in ids]
            if unknown or not names:
                raise ExportError(f"label {unknown or names} is none of {sorted(ids)}")
            class_id = ids[str(names[0]).lower()]
            size = (region.get("original_height"), region.get("original_width"))
            if size != (height, width):
                raise ExportError(f"a region is {size[1]}x{size[0]}, its image {width}x{height}")
            labels[_region_mask(region, key, height, width)] = class_id
        return photo, labels

    return read


def _region_mask(region: dict, key: str, height: int, width: int) -> np.ndarray:
    value = region["value"]
    if REGION_KEYS[key] == "brush":
        from label_studio_sdk.converter.brush import decode_rle

        try:
            rgba = decode_rle(value["rle"]).reshape(height, width, 4)
        except (KeyError, ValueError, IndexError) as exc:
            raise ExportError(f"a brush region's RLE does not decode: {exc!r}") from exc
        return rgba[:, :, 3] > 0
    points = np.asarray(value.get("points") or [], dtype=float)
    if points.ndim != 2 or len(points) < 3:
        raise ExportError("a polygon region has fewer than 3 points")
    return _polygon_mask(points * [width / 100.0, height / 100.0], height, width)


def _polygon_mask(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """A polygon in pixel corners rasterised as COCO does (pycocotools)."""
    from pycocotools import mask as coco_mask

    rle = coco_mask.frPyObjects([points.ravel().tolist()], height, width)
    with _numpy2_quiet():
        return coco_mask.decode(coco_mask.merge(rle)).astype(bool)


@contextlib.contextmanager
def _numpy2_quiet() -> Iterator[None]:
    """pycocotools 2.0.x's Cython array wrapper predates numpy 2's ``copy`` keyword: it warns
    on every decode, and decodes right."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        yield


def coco_samples(document: dict, finder: ImageFinder, ids: dict[str, int], root: Path) -> Samples:
    """Per COCO image: its annotations' masks painted with the class of their category."""
    try:
        categories = {c["id"]: str(c["name"]).lower() for c in document.get("categories", [])}
        by_image: dict[Any, list[dict]] = {}
        for annotation in document["annotations"]:
            by_image.setdefault(annotation["image_id"], []).append(annotation)
        images = [(i["id"], i["file_name"], i["height"], i["width"]) for i in document["images"]]
    except (KeyError, TypeError) as exc:
        raise ExportError(f"the COCO file lacks {exc}") from exc
    for image_id, file_name, height, width in images:
        name = f"image {image_id} ({file_name})"
        found = by_image.get(image_id)
        if not found:
            yield name, None
            continue
        yield name, _coco_reader(found, categories, ids, finder, file_name, (height, width))


def _coco_reader(
    annotations: list[dict],
    categories: dict[Any, str],
    ids: dict[str, int],
    finder: ImageFinder,
    file_name: str,
    size: tuple[int, int],
) -> Reader:
    from pycocotools import mask as coco_mask

    def read() -> tuple[Path, np.ndarray]:
        photo = finder.find(file_name)
        labels = np.zeros(size, dtype=np.uint8)
        for annotation in annotations:
            category = categories.get(annotation.get("category_id"), "?")
            if category not in ids:
                raise ExportError(f"category {category!r} is none of {sorted(ids)}")
            segmentation = annotation.get("segmentation")
            if not segmentation:
                raise ExportError("an annotation has no segmentation (an empty mask)")
            try:
                if isinstance(segmentation, dict) and isinstance(segmentation["counts"], str):
                    rle = {**segmentation, "counts": segmentation["counts"].encode()}
                else:  # polygons, or uncompressed RLE
                    rle = coco_mask.frPyObjects(segmentation, *size)
                rle = coco_mask.merge(rle) if isinstance(rle, list) else rle
                with _numpy2_quiet():
                    labels[coco_mask.decode(rle).astype(bool)] = ids[category]
            except (TypeError, ValueError, KeyError) as exc:
                raise ExportError(f"a segmentation does not decode: {exc!r}") from exc
        return photo, labels

    return read
