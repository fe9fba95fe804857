import numpy as np
import pytest
from PIL import Image

from handler.spec import ModelSpec
from model_training.datasets import (
    SYNTHETIC_MARKER,
    DatasetError,
    PetSegmentation,
    SkipLog,
    Skipped,
    collate,
    describe,
    detect_layout,
    find_samples,
    labels_from_class_mask,
    labels_from_trimap,
)
from model_training.transforms import EvalTransform

SPEC = ModelSpec(input_size=64)


def dataset(root, split="train", classes="multiclass", border="ignore"):
    samples = find_samples(root, split, val_fraction=0.2, seed=0)
    spec = ModelSpec(classes=classes, input_size=64)
    return PetSegmentation(samples, EvalTransform(spec), classes, border)


def test_detects_both_layouts(oxford_dir, kaggle_dir):
    assert detect_layout(oxford_dir) == "oxford"
    assert detect_layout(kaggle_dir) == "kaggle"


def test_wrong_folder_names_both_expected_layouts(tmp_path):
    (tmp_path / "pictures").mkdir()
    with pytest.raises(DatasetError, match=r"Oxford-IIIT Pet layout.*Kaggle layout"):
        detect_layout(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        detect_layout(tmp_path / "nowhere")


def test_oxford_splits_are_disjoint_deterministic_and_complete(oxford_dir):
    train = {s.name for s in find_samples(oxford_dir, "train", 0.2, 0)}
    val = {s.name for s in find_samples(oxford_dir, "val", 0.2, 0)}
    test = {s.name for s in find_samples(oxford_dir, "test", 0.2, 0)}
    assert not (train & val or train & test or val & test)
    assert len(train | val | test) == 40 and len(test) == 8 and len(val) == 6
    assert val == {s.name for s in find_samples(oxford_dir, "val", 0.2, 0)}
    assert val != {s.name for s in find_samples(oxford_dir, "val", 0.2, 1)}


def test_kaggle_splits_follow_the_csvs(kaggle_dir):
    for split in ("train", "val", "test"):
        rows = (kaggle_dir / f"{split}.csv").read_text().splitlines()[1:]
        assert [s.name for s in find_samples(kaggle_dir, split)] == [r.split(",")[0] for r in rows]


def test_oxford_pet_pixels_take_the_species_class(oxford_dir):
    data = dataset(oxford_dir)
    for index, sample in enumerate(data.samples[:6]):
        _, labels = data[index]
        values = set(labels.unique().tolist())
        assert sample.species in values and (3 - sample.species) not in values
        assert values <= {0, 1, 2, 255}


def test_both_layouts_give_identical_labels(oxford_dir, kaggle_dir):
    ox, kg = dataset(oxford_dir), dataset(kaggle_dir)
    by_name = {s.name: i for i, s in enumerate(kg.samples)}
    for index, sample in enumerate(ox.samples[:5]):
        assert (ox[index][1] == kg[by_name[sample.name]][1]).all()


def test_trimap_conversion_border_and_binary():
    trimap = np.array([[1, 2, 3]], np.uint8)
    assert labels_from_trimap(trimap, 2, "multiclass", "ignore").tolist() == [[2, 0, 255]]
    assert labels_from_trimap(trimap, 1, "multiclass", "pet").tolist() == [[1, 0, 1]]
    assert labels_from_trimap(trimap, 2, "binary", "ignore").tolist() == [[1, 0, 255]]
    with pytest.raises(ValueError, match=r"values \[7\]"):
        labels_from_trimap(np.array([[7]], np.uint8), 1, "multiclass", "ignore")


def test_class_mask_conversion_and_rejection():
    mask = np.array([[0, 1, 2, 255]], np.uint8)
    assert labels_from_class_mask(mask, "multiclass").tolist() == [[0, 1, 2, 255]]
    assert labels_from_class_mask(mask, "binary").tolist() == [[0, 1, 1, 255]]
    with pytest.raises(ValueError, match=r"values \[3, 128\].*0 background, 1 cat, 2 dog"):
        labels_from_class_mask(np.array([[3, 128, 0]], np.uint8), "multiclass")


def test_kaggle_masks_with_unknown_values_fail_before_training(oxford_dir, tmp_path):
    from tests.support.training import write_kaggle_layout

    root = write_kaggle_layout(oxford_dir, tmp_path / "pets")
    for mask in (root / "masks").glob("*.png"):
        Image.fromarray((np.asarray(Image.open(mask)) > 0).astype(np.uint8) * 128).save(mask)
    with pytest.raises(DatasetError, match=r"masks/.*values \[128\]"):
        find_samples(root, "train")


def test_missing_mask_is_left_out_with_a_warning(oxford_copy, capsys):
    victim = find_samples(oxford_copy, "train", 0.2, 0)[0]
    victim.mask.unlink()
    names = [s.name for s in find_samples(oxford_copy, "train", 0.2, 0)]
    assert victim.name not in names and len(names) == 25
    assert "1 train samples lack an image or mask" in capsys.readouterr().out


def test_cmyk_grayscale_and_png_in_jpg_are_converted(oxford_copy):
    data = dataset(oxford_copy)
    originals = [Image.open(s.image).convert("RGB") for s in data.samples[:3]]
    originals[0].convert("CMYK").save(data.samples[0].image, format="JPEG")
    originals[1].convert("L").save(data.samples[1].image, format="JPEG")
    originals[2].save(data.samples[2].image, format="PNG")
    for index in range(3):
        image, labels = data[index]
        assert image.shape == (3, 64, 64) and labels.shape == (64, 64)


def test_unreadable_image_is_skipped_not_raised(oxford_copy):
    data = dataset(oxford_copy)
    data.samples[0].image.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    item = data[0]
    assert isinstance(item, Skipped) and item.name == data.samples[0].name
    images, masks, skipped = collate([item, data[1], data[2]])
    assert images.shape[0] == 2 and masks.shape[0] == 2 and skipped == [item]
    log = SkipLog()
    log.add(skipped)
    assert "skipped 1 unreadable samples" in log.summary() and item.name in log.summary()


def test_mask_of_wrong_size_is_skipped(oxford_copy):
    data = dataset(oxford_copy)
    Image.new("L", (10, 10), 2).save(data.samples[0].mask)
    assert "mask is (10, 10)" in data[0].reason


def test_batch_of_only_broken_samples_collates_to_none():
    assert collate([Skipped("a", "x")]) == (None, None, [Skipped("a", "x")])


def test_the_training_data_kind_says_synthetic_or_which_dataset(
    oxford_dir, kaggle_dir, oxford_copy
):
    assert describe(oxford_dir)["kind"] == "synthetic"
    assert describe(kaggle_dir)["kind"] == "kaggle-oxford-iiit-pet"
    (oxford_copy / SYNTHETIC_MARKER).unlink()
    assert describe(oxford_copy)["kind"] == "oxford-iiit-pet"
