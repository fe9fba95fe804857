"""Folders of pet photos for the bulk `petseg predict`, and reading back what it wrote."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from bench.inputs import pet_photo
from tests.support import images

SIZES = ((96, 72), (160, 120), (200, 150), (120, 160), (300, 200))
FOLDERS = ("", "garden", "garden/2025", "sofa/winter/night")


def pet(seed: int, fmt: str = "JPEG") -> bytes:
    """A synthetic pet scene, the kind the test model was trained on: it finds pets in them."""
    data = pet_photo(*SIZES[seed % len(SIZES)], seed=seed)
    return data if fmt == "JPEG" else images.encode(Image.open(io.BytesIO(data)), fmt)


def write(root: Path, name: str, data: bytes) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def photo_tree(root: Path, count: int) -> list[str]:
    """``count`` photos over nested folders (every fifth a PNG); their names, sorted."""
    names = []
    for index in range(count):
        suffix = "png" if index % 5 == 0 else "jpg"
        name = f"{FOLDERS[index % len(FOLDERS)]}/pet{index:03}.{suffix}".lstrip("/")
        write(root, name, pet(index, "PNG" if suffix == "png" else "JPEG"))
        names.append(name)
    return sorted(names)


def report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def coco_images(out: Path) -> dict[str, dict]:
    """The COCO file's images by file name."""
    images_ = json.loads((out / "coco.json").read_text())["images"]
    return {image["file_name"]: image for image in images_}


def mask_path(out: Path, name: str) -> Path:
    return out / Path(name).with_suffix(".png")


def class_map(path: Path) -> np.ndarray:
    with Image.open(path) as mask:
        assert mask.mode == "P"  # pixel values are class ids
        return np.asarray(mask)
