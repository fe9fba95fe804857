"""End to end on a tiny dataset: train, resume, evaluate, export, reload."""

import json

import pytest
import torch

from handler.model import build_model, load_exported
from handler.spec import ModelSpec
from model_training import __main__ as model_training_cli
from model_training import commands, evaluate, export, train
from model_training.network import build_training_model, load_encoder_weights
from tests.support.training import tiny_train_args


def epochs_logged(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained_run(oxford_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    train.main(tiny_train_args(oxford_dir, run, "--epochs", "6", "--patience", "0"))
    return run


def test_training_lowers_the_loss_and_writes_its_outputs(trained_run):
    log = epochs_logged(trained_run)
    assert [r["epoch"] for r in log] == [0, 1, 2, 3, 4, 5]
    assert log[-1]["train_loss"] < 0.8 * log[0]["train_loss"]
    for name in ("last.pt", "best.pt", "curves.png", "metrics.jsonl"):
        assert (trained_run / name).stat().st_size > 0


def test_resume_repeats_exactly_what_the_interrupted_run_would_have_done(
    trained_run, oxford_dir, tmp_path, monkeypatch
):
    """Interrupted in epoch 2, resumed: its epoch 2 is the uninterrupted run's (trained_run,
    the same arguments). The resumed run is interrupted too, in epoch 3: it has shown what it
    was to show."""
    real_epoch = train.train_one_epoch

    def dies_in_epoch(epoch: int):
        def train_one_epoch(*args, **kwargs):
            if args[-2] == epoch:  # the epoch argument
                raise KeyboardInterrupt
            return real_epoch(*args, **kwargs)

        return train_one_epoch

    same = ("--epochs", "6", "--patience", "0")
    monkeypatch.setattr(train, "train_one_epoch", dies_in_epoch(2))
    with pytest.raises(KeyboardInterrupt):
        train.main(tiny_train_args(oxford_dir, tmp_path, *same))
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(train, "train_one_epoch", dies_in_epoch(3))
    with pytest.raises(KeyboardInterrupt):
        train.main(tiny_train_args(oxford_dir, tmp_path, *same, "--resume"))

    resumed = epochs_logged(tmp_path)
    assert [r["epoch"] for r in resumed] == [0, 1, 2]
    for key in ("train_loss", "val_loss", "val_miou"):
        assert resumed[2][key] == pytest.approx(epochs_logged(trained_run)[2][key], rel=1e-4)


def test_early_stopping_stops_after_patience_epochs_without_gain(oxford_dir, tmp_path, monkeypatch):
    from model_training.metrics import SegmentationMetrics

    def flat_validation(*args, **kwargs):
        """The same validation score every epoch: nothing ever improves after epoch 0."""
        metrics = SegmentationMetrics(["background", "cat", "dog"])
        metrics.update(torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 4))
        return metrics, 1.0

    monkeypatch.setattr(train, "validate", flat_validation)
    train.main(tiny_train_args(oxford_dir, tmp_path, "--epochs", "6", "--patience", "2"))
    assert [r["epoch"] for r in epochs_logged(tmp_path)] == [0, 1, 2]


def test_evaluate_writes_table_json_and_grid(trained_run, oxford_dir, tmp_path, capsys):
    args = commands.parser("evaluate").parse_args(
        [
            "--model",
            str(trained_run / "best.pt"),
            "--data",
            str(oxford_dir),
            "--out",
            str(tmp_path),
            "--workers",
            "0",
            "--samples",
            "2",
        ]
    )
    results = evaluate.main(args)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["num_images"] == 8 and saved == json.loads(json.dumps(results))
    assert set(saved["dataset"]["iou"]) == {"background", "cat", "dog"}
    assert (tmp_path / "predictions.png").stat().st_size > 0
    table = capsys.readouterr().out
    assert "foreground (pet)" in table and "pixel accuracy" in table


def test_export_round_trip_gives_identical_outputs(trained_run, tmp_path):
    (tmp_path / "m.json").write_text(json.dumps({"dataset": {"miou": 0.5}}))
    spec = export.export(
        trained_run / "best.pt", tmp_path / "exp", tmp_path / "m.json", version="3.0"
    )
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["model_spec.json", "weights.pt"]
    model, loaded = load_exported(tmp_path / "exp")
    assert loaded == spec and loaded.version == "3.0" and loaded.metrics["dataset"]["miou"] == 0.5
    from model_training.utils import model_from_checkpoint

    original, _, _ = model_from_checkpoint(trained_run / "best.pt")
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(x), original(x))


def test_local_encoder_weights_load_into_the_encoder(tmp_path):
    import torchvision

    resnet = torchvision.models.resnet34()
    torch.save(resnet.state_dict(), tmp_path / "r34.pth")
    model = build_training_model(ModelSpec(), str(tmp_path / "r34.pth"))
    assert torch.equal(model.encoder.conv1.weight, resnet.conv1.weight)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ValueError, match="does not fit"):
        load_encoder_weights(build_model(ModelSpec()), tmp_path / "r18.pth")


def test_binary_mode_trains_one_output(oxford_dir, tmp_path):
    train.main(tiny_train_args(oxford_dir, tmp_path, "--epochs", "1", "--classes", "binary"))
    state = torch.load(tmp_path / "best.pt", weights_only=True)
    assert ModelSpec.from_dict(state["spec"]).num_outputs == 1
    assert state["model"]["segmentation_head.0.weight"].shape[0] == 1


def test_cli_reports_a_wrong_folder_without_a_traceback(tmp_path, capsys):
    """`python -m model_training train` in this process (torch is loaded already): an exception
    would propagate here instead of the one-line error and exit status 2."""
    argv = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run")]
    assert model_training_cli.main(argv) == 2
    stderr = capsys.readouterr().err
    assert "matches no known dataset layout" in stderr and stderr.count("\n") == 1
