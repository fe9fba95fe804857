"""The photos of a bulk run: files, folders (walked recursively) and globs, each named by its path
relative to one root, the folder all the inputs share.

The name is what the photo's outputs mirror (a/b/cat.jpg -> OUT/a/b/cat.png) and what the COCO
file and the journal call it, so it must not depend on where the command runs from, and two
photos never share one. Paths are made absolute without resolving symbolic links: a link inside
a folder keeps its place in the tree instead of pointing the outputs outside it.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path, PurePosixPath

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
"""What a folder's files are taken as photos by: the formats the handler decodes
(handler.decoding.FORMATS). Other files found in folders (notes, sidecars, hidden files) are
listed as ignored; files named one by one or matched by a glob are sent whatever their name."""
MASK_SUFFIX = ".png"
OVERLAY_SUFFIX = ".overlay.jpg"


@dataclass(frozen=True)
class Photo:
    path: Path
    """Absolute, links not resolved."""
    name: str
    """Relative to the root, with forward slashes: a/b/cat.jpg."""

    def mask(self, out_dir: Path) -> Path:
        return out_dir / (self.stem + MASK_SUFFIX)

    def overlay(self, out_dir: Path) -> Path:
        return out_dir / (self.stem + OVERLAY_SUFFIX)

    @property
    def stem(self) -> str:
        return str(PurePosixPath(self.name).with_suffix(""))


@dataclass
class Collection:
    """What the inputs name: the photos, sorted by name, and what was left out and why."""

    root: Path
    photos: list[Photo] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    """Files of the folders that are not photos by their name, relative to the root."""
    clashes: list[tuple[Photo, Photo]] = field(default_factory=list)
    """(photo, the photo whose outputs it would overwrite): cat.jpg and cat.png in one folder."""


def collect(inputs: list[str], out_dir: Path) -> Collection:
    """Every photo the inputs name, once; ValueError for an input that names nothing (a typo is
    a usage error, found before anything is sent). ``out_dir`` is never walked into: outputs
    kept inside the photo folder are not photos of the next run."""
    out_dir = Path(os.path.abspath(out_dir))
    bases, found, ignored = [], {}, []
    for given in inputs:
        base, files, skipped = _expand(given, out_dir)
        bases.append(base)
        found.update((path, None) for path in files)
        ignored += skipped
    root = Path(os.path.commonpath(bases))
    named = (Photo(path, path.relative_to(root).as_posix()) for path in found)
    photos = sorted(named, key=attrgetter("name"))
    inside = next((p for p in photos if p.path.is_relative_to(out_dir)), None)
    if inside is not None:
        raise ValueError(f"--out-dir {out_dir} holds photos ({inside.path}): name another folder")
    collection = Collection(root, ignored=sorted(p.relative_to(root).as_posix() for p in ignored))
    owners: dict[str, Photo] = {}
    for photo in photos:
        owner = owners.setdefault(photo.stem, photo)
        if owner is photo:
            collection.photos.append(photo)
        else:
            collection.clashes.append((photo, owner))
    return collection


def _expand(given: str, out_dir: Path) -> tuple[Path, list[Path], list[Path]]:
    """(the folder its names start from, its photos, the files of its folders left out)."""
    if not os.path.exists(given) and is_pattern(given):
        matches = [
            match
            for match in sorted(glob.glob(given, recursive=True))
            if not Path(os.path.abspath(match)).is_relative_to(out_dir)  # a run's own outputs
        ]
        if not matches:
            raise ValueError(f"no file matches {given!r}")
        base = Path(os.path.abspath(_fixed_part(given)))
    else:
        if not os.path.exists(given):
            raise ValueError(f"{given}: no such file or folder")
        matches = [given]
        base = Path(os.path.abspath(given if os.path.isdir(given) else os.path.dirname(given)))
    files, skipped = [], []
    for match in map(os.path.abspath, matches):
        if os.path.isdir(match):
            photos, others = _walk(Path(match), out_dir)
            files += photos
            skipped += others
        else:
            files.append(Path(match))
    return base, files, skipped


def many(inputs: list[str]) -> bool:
    """Whether the inputs may name more than one photo: several of them, a folder or a glob."""
    if len(inputs) > 1:
        return True
    given = inputs[0]
    return os.path.isdir(given) or (not os.path.exists(given) and is_pattern(given))


def is_pattern(given: str) -> bool:
    """Whether ``given`` holds a wildcard (``*``, ``?``, ``[``); one that names an existing
    file is taken as that file's name instead."""
    return glob.escape(given) != given


def _fixed_part(pattern: str) -> str:
    """The folder a glob's matches all lie in: its path up to the first wildcard."""
    parts = Path(pattern).parts
    fixed = next(i for i, part in enumerate(parts) if is_pattern(part))
    return str(Path(*parts[:fixed])) if fixed else "."


def _walk(folder: Path, out_dir: Path) -> tuple[list[Path], list[Path]]:
    """A folder's photos and its other files, hidden folders and ``out_dir`` not entered."""
    photos, others = [], []
    for top, folders, names in os.walk(folder):
        folders[:] = [
            name for name in folders if not name.startswith(".") and Path(top, name) != out_dir
        ]
        for name in names:
            is_photo = not name.startswith(".") and Path(name).suffix.lower() in PHOTO_SUFFIXES
            (photos if is_photo else others).append(Path(top, name))
    return photos, others
