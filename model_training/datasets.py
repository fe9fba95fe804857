"""Oxford-IIIT Pet datasets in their two published layouts, and skipping of broken samples.

* Oxford (original): ``images/*.jpg``, ``annotations/trimaps/*.png`` (1 pet, 2 background,
  3 border) and ``annotations/{trainval,test}.txt`` with lines ``Image CLASS-ID SPECIES BREED-ID``.
  The species (1 cat, 2 dog) gives the class of the pet pixels.
* Kaggle (the preprocessed copy the original app used): ``images/<stem>.jpg``,
  ``masks/<stem>.png`` holding class ids (0 background, 1 cat, 2 dog, 255 ignore) and
  ``train.csv``/``val.csv``/``test.csv`` with a column ``Image``.

Real data has junk (CMYK or grayscale JPEGs, PNGs named .jpg, missing masks). A sample that
cannot be read comes back as :class:`Skipped` instead of raising, so one bad file never stops
an epoch; the training loop counts and reports them.
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from handler.spec import IGNORE_INDEX, SPECIES_CLASS
from model_training.exports import EXPORT_MARKER

TRIMAP_PET, TRIMAP_BACKGROUND, TRIMAP_BORDER = 1, 2, 3
SYNTHETIC_MARKER = "petseg-synthetic.json"
"""Written by `petseg synth` beside its Oxford-layout files: the model card says "synthetic"."""
KINDS = {"oxford": "oxford-iiit-pet", "kaggle": "kaggle-oxford-iiit-pet"}
KAGGLE_MASK_VALUES = {0: "background", 1: "cat", 2: "dog", IGNORE_INDEX: "ignore"}
SPLITS = ("train", "val", "test")
LAYOUT_HELP = (
    "expected either the Oxford-IIIT Pet layout (images/*.jpg, annotations/trimaps/*.png, "
    "annotations/trainval.txt and annotations/test.txt) or the Kaggle layout "
    "(images/*.jpg, masks/*.png, train.csv, val.csv, test.csv with a column 'Image')"
)


class DatasetError(ValueError):
    """The dataset folder or its annotations cannot be used as given."""


@dataclass(frozen=True)
class Sample:
    name: str
    image: Path
    mask: Path
    species: int | None = None
    """Oxford species (1 cat, 2 dog); None where the mask itself holds class ids."""


@dataclass(frozen=True)
class Skipped:
    """A sample that could not be loaded, and why."""

    name: str
    reason: str


def detect_layout(root: Path) -> str:
    """'oxford' or 'kaggle', from the files present; a clear error naming both otherwise."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist; {LAYOUT_HELP}")
    if (root / "annotations" / "trimaps").is_dir() and (root / "images").is_dir():
        return "oxford"
    if (root / "masks").is_dir() and (root / "images").is_dir() and (root / "train.csv").is_file():
        return "kaggle"
    raise DatasetError(f"{root} matches no known dataset layout; {LAYOUT_HELP}")


def _oxford_list(path: Path) -> list[tuple[str, int]]:
    if not path.is_file():
        raise DatasetError(f"missing {path}; {LAYOUT_HELP}")
    rows = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            fields = line.split()
            if len(fields) < 3 or int(fields[2]) not in SPECIES_CLASS:
                raise DatasetError(f"{path}: bad line {line!r}, expected 'Image CLASS-ID SPECIES'")
            rows.append((fields[0], int(fields[2])))
    return rows


def oxford_samples(root: Path, split: str, val_fraction: float, seed: int) -> list[Sample]:
    """Samples of one split; 'val' is carved from trainval deterministically by ``seed``."""
    ann = root / "annotations"
    rows = _oxford_list(ann / ("test.txt" if split == "test" else "trainval.txt"))
    if split != "test":
        rows = sorted(rows)
        random.Random(seed).shuffle(rows)
        n_val = max(1, round(len(rows) * val_fraction)) if val_fraction > 0 else 0
        rows = rows[:n_val] if split == "val" else rows[n_val:]
    return [
        Sample(name, root / "images" / f"{name}.jpg", ann / "trimaps" / f"{name}.png", species)
        for name, species in rows
    ]


def kaggle_samples(root: Path, split: str) -> list[Sample]:
    path = root / f"{split}.csv"
    if not path.is_file():
        raise DatasetError(f"missing {path}; {LAYOUT_HELP}")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if "Image" not in (reader.fieldnames or []):
            raise DatasetError(f"{path} has no column 'Image' (columns: {reader.fieldnames})")
        stems = [Path(row["Image"].strip()).stem for row in reader if row["Image"].strip()]
    return [Sample(s, root / "images" / f"{s}.jpg", root / "masks" / f"{s}.png") for s in stems]


def labels_from_trimap(trimap: np.ndarray, species: int, classes: str, border: str) -> np.ndarray:
    """Oxford trimap -> class ids: pet pixels take the species' class, border is ignore or pet."""
    unknown = set(np.unique(trimap).tolist()) - {TRIMAP_PET, TRIMAP_BACKGROUND, TRIMAP_BORDER}
    if unknown:
        raise ValueError(f"trimap has values {sorted(unknown)}, expected 1 pet, 2 bg, 3 border")
    pet = 1 if classes == "binary" else SPECIES_CLASS[species]
    labels = np.zeros(trimap.shape, dtype=np.uint8)
    labels[trimap == TRIMAP_PET] = pet
    labels[trimap == TRIMAP_BORDER] = pet if border == "pet" else IGNORE_INDEX
    return labels


def labels_from_class_mask(mask: np.ndarray, classes: str) -> np.ndarray:
    """Kaggle mask (class ids) -> labels, refusing values that are not class ids."""
    unknown = set(np.unique(mask).tolist()) - set(KAGGLE_MASK_VALUES)
    if unknown:
        expected = ", ".join(f"{v} {n}" for v, n in KAGGLE_MASK_VALUES.items())
        raise ValueError(f"mask has values {sorted(unknown)}; expected only {expected}")
    if classes == "binary":
        return np.where((mask == 1) | (mask == 2), 1, mask).astype(np.uint8)
    return mask.astype(np.uint8)


PairTransform = Callable[[Image.Image, Image.Image], tuple[torch.Tensor, torch.Tensor]]


class PetSegmentation(torch.utils.data.Dataset):
    """Image + label mask pairs of one split, with broken files returned as :class:`Skipped`."""

    def __init__(
        self,
        samples: list[Sample],
        transform: PairTransform,
        classes: str = "multiclass",
        border: str = "ignore",
        max_side: int | None = None,
    ) -> None:
        self.samples = samples
        self.transform = transform
        self.classes = classes
        self.border = border
        self.max_side = max_side
        """Largest side the transform needs; JPEGs may be decoded down to it (never below)."""

    def __len__(self) -> int:
        return len(self.samples)

    def labels(self, sample: Sample) -> Image.Image:
        with Image.open(sample.mask) as mask:
            if mask.mode not in ("L", "P", "I", "I;16"):
                raise ValueError(f"mask is {mask.mode}, expected a single-channel PNG")
            array = np.asarray(mask)
        if sample.species is not None:
            return Image.fromarray(
                labels_from_trimap(array, sample.species, self.classes, self.border)
            )
        return Image.fromarray(labels_from_class_mask(array, self.classes))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | Skipped:
        sample = self.samples[index]
        try:
            with Image.open(sample.image) as raw:
                size = raw.size
                if self.max_side:  # let libjpeg decode at 1/2, 1/4 ... when that is enough
                    raw.draft("RGB", (self.max_side, self.max_side))
                image = raw.convert("RGB")
            labels = self.labels(sample)
            if labels.size != size:
                raise ValueError(f"mask is {labels.size}, image is {size}")
            if image.size != size:
                labels = labels.resize(image.size, Image.Resampling.NEAREST)
        except (OSError, ValueError, SyntaxError) as exc:
            return Skipped(sample.name, f"{type(exc).__name__}: {exc}")
        return self.transform(image, labels)


def collate(batch: list) -> tuple[torch.Tensor | None, torch.Tensor | None, list[Skipped]]:
    """Stack the good samples; hand the skipped ones on so the loop can count them."""
    good = [item for item in batch if not isinstance(item, Skipped)]
    skipped = [item for item in batch if isinstance(item, Skipped)]
    if not good:
        return None, None, skipped
    images, masks = zip(*good, strict=True)
    return torch.stack(images), torch.stack(masks), skipped


class SkipLog:
    """Counts skipped samples across an epoch or a run, for one warning at the end."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def add(self, skipped: list[Skipped]) -> None:
        self.names.update((s.name, s.reason) for s in skipped)

    def summary(self) -> str:
        if not self.names:
            return ""
        reasons = Counter(r.split(":")[0] for r in self.names.values())
        examples = "; ".join(f"{n}: {r}" for n, r in list(self.names.items())[:3])
        return f"skipped {len(self.names)} unreadable samples ({dict(reasons)}), e.g. {examples}"


def find_samples(root: Path, split: str, val_fraction: float = 0.1, seed: int = 0) -> list[Sample]:
    """Samples of ``split`` in either layout, without those whose files are missing."""
    if split not in SPLITS:
        raise DatasetError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    layout = detect_layout(root)
    if layout == "oxford":
        samples = oxford_samples(root, split, val_fraction, seed)
    else:
        samples = kaggle_samples(root, split)
    present = [s for s in samples if s.image.is_file() and s.mask.is_file()]
    if len(present) < len(samples):
        missing = [s.name for s in samples if s not in present]
        print(
            f"warning: {len(missing)} {split} samples lack an image or mask and are left out, "
            f"e.g. {', '.join(missing[:3])}"
        )
    if not present:
        raise DatasetError(f"no usable {split} samples in {root}")
    _check_masks(present[:8])
    return present


def _check_masks(samples: list[Sample]) -> None:
    """Fail before training, not mid-epoch, when the masks are not what the layout promises."""
    probe = PetSegmentation(samples, transform=lambda image, labels: (image, labels))
    for sample in samples:
        try:
            probe.labels(sample)
        except ValueError as exc:
            raise DatasetError(f"{sample.mask}: {exc}") from exc


def describe(root: Path) -> dict[str, object]:
    """What the model was trained on, for the model spec."""
    root = Path(root)
    layout = detect_layout(root)
    kind = "synthetic" if (root / SYNTHETIC_MARKER).is_file() else KINDS[layout]
    described = {"kind": kind, "path": str(root.resolve()), "layout": layout, "name": root.name}
    if (root / EXPORT_MARKER).is_file():  # converted from an export: say which
        export = json.loads((root / EXPORT_MARKER).read_text())
        described.update(kind=f"{export['kind']}-export", export=export["export"])
    return described
