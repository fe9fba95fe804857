"""Synthetic "pets": a dataset in the Oxford-IIIT Pet layout that the project can make offline.

Each image holds one or two animals of one species on a cluttered, textured background. Cats and
dogs share the same fur colours and textures, so only shape tells them apart, as in photos:
cats have upright pointed ears, a round head with no snout, a slender body and a long raised
tail; dogs have floppy ears, a long snout, a stockier body, thicker legs and a short tail. Poses,
scale, crop and occluders vary. Trimaps are exact, with a border band like Oxford's.

    python -m model_training synth data/synth --n 2000 --seed 0
"""

from __future__ import annotations

import argparse
import json
import math
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from model_training.datasets import (
    SYNTHETIC_MARKER,
    TRIMAP_BACKGROUND,
    TRIMAP_BORDER,
    TRIMAP_PET,
)

CAT, DOG = 1, 2
FUR_COLOURS = [
    (222, 140, 60),
    (120, 120, 125),
    (40, 38, 36),
    (235, 230, 220),
    (150, 100, 60),
    (225, 200, 150),
    (90, 60, 40),
    (180, 170, 160),
    (200, 120, 80),
    (60, 60, 70),
]
Shape = tuple[str, list[tuple[float, float]], float]
"""(kind, points in body-length units, stroke width): "poly" filled, "line" stroked."""


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 28) -> list[tuple[float, float]]:
    return [
        (cx + rx * math.cos(2 * math.pi * k / n), cy + ry * math.sin(2 * math.pi * k / n))
        for k in range(n)
    ]


def _jitter(rng: np.random.Generator, value: float, amount: float = 0.15) -> float:
    return value * (1 + rng.uniform(-amount, amount))


def animal_shapes(species: int, rng: np.random.Generator) -> list[Shape]:
    """Silhouette parts of one animal facing right, body centred on the origin, length 1."""
    cat = species == CAT
    body_ry = _jitter(rng, 0.16 if cat else 0.25)
    head_r = _jitter(rng, 0.15 if cat else 0.14)
    hx, hy = _jitter(rng, 0.52), -_jitter(rng, 0.22 if cat else 0.26)
    leg_len = _jitter(rng, 0.30 if cat else 0.36)
    leg_w = _jitter(rng, 0.07 if cat else 0.11)
    shapes: list[Shape] = [
        ("poly", _ellipse(0, 0, 0.5, body_ry), 0),
        ("line", [(hx - 0.15, hy * 0.5), (hx, hy)], head_r * 1.3),  # neck
        ("poly", _ellipse(hx, hy, head_r, head_r), 0),
    ]
    for x in (-0.38, -0.24, 0.24, 0.38):
        foot = (x + rng.uniform(-0.08, 0.08), body_ry * 0.5 + leg_len)
        shapes.append(("line", [(x, body_ry * 0.5), foot], leg_w))
    parts = _cat_parts if cat else _dog_parts
    return shapes + parts(rng, hx, hy, head_r)


def _cat_parts(rng: np.random.Generator, hx: float, hy: float, head_r: float) -> list[Shape]:
    """Upright pointed ears and a long, thin, raised tail."""
    ear_h = _jitter(rng, 0.17)
    shapes: list[Shape] = []
    for dx in (-0.6, 0.35):
        base = hx + dx * head_r
        tip = (base + rng.uniform(-0.02, 0.04), hy - head_r * 0.6 - ear_h)
        shapes.append(
            (
                "poly",
                [(base - 0.065, hy - head_r * 0.55), (base + 0.065, hy - head_r * 0.75), tip],
                0,
            )
        )
    curl = rng.uniform(-0.25, 0.1)
    tail = [(-0.48, -0.02), (-0.66, -0.2), (-0.7 + curl, -0.45), (-0.6 + curl, -0.62)]
    return [*shapes, ("line", tail, _jitter(rng, 0.07))]


def _dog_parts(rng: np.random.Generator, hx: float, hy: float, head_r: float) -> list[Shape]:
    """A long snout, floppy ears hanging below the jaw line and a short, thick tail."""
    snout = _jitter(rng, 0.2)
    muzzle = _ellipse(hx + head_r * 0.6 + snout * 0.5, hy + head_r * 0.3, snout * 0.7, head_r * 0.5)
    ear_len = _jitter(rng, 0.2)
    ear = _ellipse(hx - head_r * 0.35, hy + ear_len * 0.45, _jitter(rng, 0.06), ear_len / 2)
    tail_tip = (-0.64, -0.2 + rng.uniform(-0.1, 0.1))
    return [
        ("poly", muzzle, 0),
        ("poly", ear, 0),
        ("line", [(-0.47, -0.05), tail_tip], _jitter(rng, 0.08)),
    ]


def _place(
    points: list[tuple[float, float]], scale: float, angle: float, flip: bool, cx: float, cy: float
) -> list[tuple[float, float]]:
    """Body-length units -> image pixels: flip, rotate, scale, translate."""
    cos, sin = math.cos(angle), math.sin(angle)
    out = []
    for x, y in points:
        x = -x if flip else x
        out.append((cx + scale * (x * cos - y * sin), cy + scale * (x * sin + y * cos)))
    return out


def draw_silhouette(
    size: tuple[int, int],
    shapes: list[Shape],
    scale: float,
    angle: float,
    flip: bool,
    cx: float,
    cy: float,
) -> Image.Image:
    """Binary mask ("L", 0/255) of one placed animal."""
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for kind, points, width in shapes:
        placed = _place(points, scale, angle, flip, cx, cy)
        if kind == "poly":
            draw.polygon(placed, fill=255)
        else:
            draw.line(placed, fill=255, width=max(1, round(width * scale)), joint="curve")
            r = width * scale / 2
            for x, y in (placed[0], placed[-1]):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return mask


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a small random grid upsampled bilinearly."""
    grid = rng.random((max(2, cells), max(2, cells))).astype(np.float32)
    img = Image.fromarray((grid * 255).astype(np.uint8)).resize(
        (shape[1], shape[0]), Image.Resampling.BICUBIC
    )
    return np.asarray(img, dtype=np.float32) / 255


def fur_texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """HxWx3 float fur: a base colour, shading, strand-like streaks and optional stripes."""
    h, w = shape
    base = np.asarray(FUR_COLOURS[rng.integers(len(FUR_COLOURS))], dtype=np.float32)
    base = base * rng.uniform(0.85, 1.15, size=3)
    shade = 0.75 + 0.5 * smooth_noise(rng, shape, int(rng.integers(3, 7)))
    # Noise stretched along one axis reads as strands of fur.
    strands = Image.fromarray((rng.random((h, max(1, w // 4))) * 255).astype(np.uint8))
    streak = np.asarray(strands.resize((w, h), Image.Resampling.BILINEAR), np.float32) / 255
    fur = base * shade[..., None] * (0.85 + 0.3 * streak[..., None])
    if rng.random() < 0.4:  # tabby / brindle stripes, for either species
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        theta, period = rng.uniform(0, math.pi), rng.uniform(6, 14)
        wave = np.sin((xx * math.cos(theta) + yy * math.sin(theta)) / period * 2 * math.pi)
        wave += 0.8 * (smooth_noise(rng, shape, 6) - 0.5)
        fur *= np.where(wave > 0.35, 0.55, 1.0)[..., None]
    return fur


def background(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A textured, cluttered scene: gradient, blotches, random shapes, sometimes fur-like blobs."""
    w, h = size
    top, bottom = rng.uniform(30, 230, size=(2, 3))
    ramp = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    arr = top * (1 - ramp) + bottom * ramp
    arr = arr * (0.7 + 0.6 * smooth_noise(rng, (h, w), int(rng.integers(3, 10))))[..., None]
    arr += rng.normal(0, 6, size=(h, w, 3))
    image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 8))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x0, y0 = rng.uniform(-0.2, 1.0) * w, rng.uniform(-0.2, 1.0) * h
        x1, y1 = x0 + rng.uniform(0.05, 0.5) * w, y0 + rng.uniform(0.05, 0.5) * h
        kind = rng.integers(4)
        if kind == 0:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        elif kind == 1:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif kind == 2:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(2, 12)))
        else:
            pts = [(x0 + rng.uniform(0, 0.4) * w, y0 + rng.uniform(0, 0.4) * h) for _ in range(5)]
            draw.polygon(pts, fill=colour)
    if rng.random() < 0.1:  # a furry cushion: texture alone must not mean "pet"
        blob = Image.new("L", size, 0)
        bx, by = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.1, 0.25) * min(w, h)
        ImageDraw.Draw(blob).polygon(_ellipse(bx, by, r * rng.uniform(0.6, 1.6), r, 14), fill=255)
        fur = Image.fromarray(np.clip(fur_texture(rng, (h, w)), 0, 255).astype(np.uint8))
        image.paste(fur, (0, 0), blob)
    return image


def _occlude(rng: np.random.Generator, image: Image.Image, labels: np.ndarray) -> None:
    """Draw a foreground object (post, branch, box) over the scene and clear its labels."""
    w, h = image.size
    occluder = Image.new("L", image.size, 0)
    draw = ImageDraw.Draw(occluder)
    x = rng.uniform(0.2, 0.8) * w
    if rng.random() < 0.5:
        draw.line(
            (x, -5, x + rng.uniform(-0.3, 0.3) * w, h + 5),
            fill=255,
            width=int(rng.uniform(0.04, 0.12) * w),
        )
    else:
        y = rng.uniform(0.5, 1.0) * h
        draw.rectangle((x - rng.uniform(0.1, 0.3) * w, y, x + rng.uniform(0.1, 0.3) * w, h), 255)
    colour = Image.new("RGB", image.size, tuple(int(c) for c in rng.integers(0, 256, 3)))
    image.paste(colour, (0, 0), occluder)
    labels[np.asarray(occluder) > 0] = 0


def make_sample(species: int, rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
    """One RGB image and its Oxford-style trimap (1 pet, 2 background, 3 border)."""
    w = int(rng.integers(240, 400))
    h = int(w * rng.uniform(0.7, 1.3))
    image = background(rng, (w, h))
    labels = np.zeros((h, w), dtype=np.uint8)
    n_animals = 2 if rng.random() < 0.15 else 1
    across = rng.uniform(0.15, 0.85) if n_animals == 1 else rng.choice([0.25, 0.75])
    for k in range(n_animals):
        scale = rng.uniform(0.6, 0.95) * min(w, h) * (0.7 if k else 1.0)
        # A second animal stands on the other side: overlapping, not stacked on the first.
        x = 1 - across + rng.uniform(-0.1, 0.1) if k else across
        cx, cy = x * w, rng.uniform(0.25, 0.8) * h
        shapes = animal_shapes(species, rng)
        angle = rng.uniform(-0.35, 0.35)
        mask = draw_silhouette((w, h), shapes, scale, angle, bool(rng.random() < 0.5), cx, cy)
        fur = Image.fromarray(np.clip(fur_texture(rng, (h, w)), 0, 255).astype(np.uint8))
        image.paste(fur, (0, 0), mask.filter(ImageFilter.GaussianBlur(0.7)))
        labels[np.asarray(mask) > 127] = 1
    if rng.random() < 0.2:
        _occlude(rng, image, labels)
    # Border band = 5x5 dilation minus 5x5 erosion. A 5x5 box blur of the 0/255 mask gives both
    # (> 0: some pet pixel near, == 255: all pet) at a fraction of MaxFilter/MinFilter's cost.
    box = np.asarray(Image.fromarray(labels * 255).filter(ImageFilter.BoxBlur(2)))
    band = (box > 0) & (box < 255)
    trimap = np.where(labels > 0, TRIMAP_PET, TRIMAP_BACKGROUND).astype(np.uint8)
    trimap[band] = TRIMAP_BORDER
    return image, Image.fromarray(trimap)


def sample_name(index: int, species: int) -> str:
    """Oxford's convention: cat image names start upper-case, dog names lower-case."""
    return f"Synthcat_{index + 1}" if species == CAT else f"synthdog_{index + 1}"


def _write_one(task: tuple[Path, int, int]) -> tuple[str, int]:
    out, seed, index = task
    rng = np.random.default_rng([seed, index])
    species = CAT if rng.random() < 0.5 else DOG
    image, trimap = make_sample(species, rng)
    name = sample_name(index, species)
    image.save(out / "images" / f"{name}.jpg", quality=90)
    trimap.save(out / "annotations" / "trimaps" / f"{name}.png")
    return name, species


def generate(out: Path, n: int, seed: int = 0, test_fraction: float = 0.2, jobs: int = 2) -> None:
    """Write ``n`` samples plus list.txt, trainval.txt and test.txt in the Oxford layout."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "annotations" / "trimaps").mkdir(parents=True, exist_ok=True)
    tasks = [(out, seed, i) for i in range(n)]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        rows = list(tqdm(pool.map(_write_one, tasks, chunksize=16), total=n, desc="synth"))
    lines = [f"{name} {species} {species} 1" for name, species in rows]
    n_test = round(n * test_fraction)
    ann = out / "annotations"
    header = "#Image CLASS-ID SPECIES BREED-ID\n#SPECIES: 1:Cat 2:Dog\n"
    (ann / "list.txt").write_text(header + "\n".join(lines) + "\n")
    (ann / "trainval.txt").write_text("\n".join(lines[n_test:]) + "\n")
    (ann / "test.txt").write_text("\n".join(lines[:n_test]) + "\n")
    marker = {"generator": "petseg synth", "images": n, "seed": seed}
    (out / SYNTHETIC_MARKER).write_text(json.dumps(marker) + "\n")


def main(args: argparse.Namespace) -> None:
    generate(args.out, args.n, args.seed, args.test_fraction, args.jobs)
    print(f"wrote {args.n} images to {args.out}")
