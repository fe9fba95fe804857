import hashlib

import numpy as np
from PIL import Image

from model_training.synth import CAT, DOG, generate, make_sample


def digest(root):
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    generate(tmp_path / "a", 6, seed=3, jobs=1)
    generate(tmp_path / "b", 6, seed=3, jobs=2)
    generate(tmp_path / "c", 6, seed=4, jobs=1)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")


def test_list_names_follow_oxford_case_convention(oxford_dir):
    rows = [
        line.split()
        for line in (oxford_dir / "annotations" / "list.txt").read_text().splitlines()
        if not line.startswith("#")
    ]
    assert len(rows) == 40
    assert {int(r[2]) for r in rows} == {CAT, DOG}
    for name, _, species, _ in rows:
        assert name[0].isupper() == (int(species) == CAT)
        assert (oxford_dir / "images" / f"{name}.jpg").is_file()


def test_trimap_has_pet_background_and_a_thin_border():
    rng = np.random.default_rng(7)
    image, trimap = make_sample(DOG, rng)
    values = np.asarray(trimap)
    assert image.size == trimap.size and image.mode == "RGB"
    assert set(np.unique(values)) == {1, 2, 3}
    pet, border = (values == 1).mean(), (values == 3).mean()
    assert pet > 0.03 and 0 < border < pet


def test_species_differ_in_shape_not_colour_statistics(tmp_path):
    """Cats and dogs draw fur from the same colours: mean pet colour must not separate them."""
    generate(tmp_path, 60, seed=5, jobs=2)
    means = {CAT: [], DOG: []}
    for line in (tmp_path / "annotations" / "list.txt").read_text().splitlines()[2:]:
        name, _, species, _ = line.split()
        pixels = np.asarray(Image.open(tmp_path / "images" / f"{name}.jpg"), np.float32)
        pet = np.asarray(Image.open(tmp_path / "annotations" / "trimaps" / f"{name}.png")) == 1
        means[int(species)].append(pixels[pet].mean())
    assert abs(np.mean(means[CAT]) - np.mean(means[DOG])) < 0.5 * np.std(means[CAT] + means[DOG])
