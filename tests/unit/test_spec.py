import json

import pytest

from handler.spec import CLASS_SETS, ModelSpec


def test_round_trip_keeps_every_field(tmp_path):
    spec = ModelSpec(classes="binary", input_size=160, version="2.1", metrics={"miou": 0.9})
    spec.save(tmp_path)
    assert ModelSpec.load(tmp_path) == spec


def test_saved_json_is_self_describing(tmp_path):
    ModelSpec().save(tmp_path)
    data = json.loads((tmp_path / "model_spec.json").read_text())
    assert data["class_names"] == ["background", "cat", "dog"]
    assert data["palette"] == [[0, 0, 0], [255, 0, 0], [0, 255, 0]]
    assert data["num_outputs"] == 3 and data["ignore_index"] == 255
    assert data["mean"] == [0.485, 0.456, 0.406] and data["std"] == [0.229, 0.224, 0.225]
    assert data["architecture"] == "Unet" and data["encoder"] == "resnet34"


def test_binary_has_one_output_and_two_labels():
    spec = ModelSpec(classes="binary")
    assert spec.num_outputs == 1
    assert spec.num_classes == 2 == len(spec.palette)


@pytest.mark.parametrize("size", [0, 100, 250])
def test_input_size_must_be_multiple_of_32(size):
    with pytest.raises(ValueError, match="multiple of 32"):
        ModelSpec(input_size=size)


def test_unknown_classes_rejected():
    with pytest.raises(ValueError, match="classes must be one of"):
        ModelSpec(classes="cats-only")


def test_missing_spec_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="exported model"):
        ModelSpec.load(tmp_path)


def test_palettes_cover_every_class():
    for classes in CLASS_SETS.values():
        assert len(classes["palette"]) == len(classes["class_names"])
