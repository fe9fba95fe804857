"""The training's progress file (model_training.progress) and GET /api/training, which shows it
to the page while the first model trains."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from frontend_server import create_app
from frontend_server.openapi import training
from model_training import progress
from model_training.progress import TrainingProgress, read_progress, set_state
from tests.support.web import offline_config


class Clock:
    """time.monotonic as the test sets it."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    return clock


def record(epoch: int, loss: float, miou: float | None) -> dict:
    """A trainer's log record (its epochs count from 0)."""
    return {"epoch": epoch, "train_loss": loss, "val_miou": miou, "val_loss": 1.0}


def test_the_trainer_writes_each_epoch_and_estimates_the_time_left(tmp_path, clock):
    path = tmp_path / "run" / "progress.json"
    tracker = TrainingProgress(path, epochs=4, done=[])
    first = read_progress(path)
    assert first["state"] == "training" and first["epoch"] == 0 and first["epochs"] == 4
    assert first["seconds_left"] is None and first["history"] == []  # no epoch timed yet
    assert first["loss"] is None and first["val_miou"] is None

    clock.now += 30
    tracker.epoch_done(record(0, 0.9, 0.2))
    clock.now += 50
    tracker.epoch_done(record(1, 0.5, None))  # no pet pixel in the split: mIoU undefined
    now = read_progress(path)
    assert now["epoch"] == 2 and now["loss"] == 0.5 and now["val_miou"] is None
    assert now["seconds_left"] == 80.0  # 40 s an epoch, two to go
    assert now["history"] == [
        {"epoch": 1, "loss": 0.9, "val_miou": 0.2},
        {"epoch": 2, "loss": 0.5, "val_miou": None},
    ]
    assert [p.name for p in path.parent.iterdir()] == ["progress.json"]  # no partial file left

    tracker.finished()  # an early stop too: the loop is over, the export follows
    done = read_progress(path)
    assert done["state"] == "exporting" and done["seconds_left"] == 0
    assert done["history"] == now["history"]


def test_a_resumed_training_keeps_the_earlier_epochs_and_times_only_its_own(tmp_path, clock):
    path = tmp_path / "progress.json"
    tracker = TrainingProgress(path, epochs=3, done=[record(0, 0.8, 0.3)])
    assert read_progress(path)["epoch"] == 1 and read_progress(path)["seconds_left"] is None
    clock.now += 20
    tracker.epoch_done(record(1, 0.6, 0.4))
    now = read_progress(path)
    assert [p["epoch"] for p in now["history"]] == [1, 2] and now["seconds_left"] == 20.0


def test_a_new_state_keeps_the_epochs_and_unknown_states_are_refused(tmp_path, clock):
    path = tmp_path / "progress.json"
    TrainingProgress(path, epochs=2, done=[]).epoch_done(record(0, 0.7, 0.5))
    set_state(path, "failed", "make archive failed with exit status 2")
    failed = read_progress(path)
    assert failed["state"] == "failed" and failed["detail"].endswith("exit status 2")
    assert failed["epoch"] == 1 and len(failed["history"]) == 1
    with pytest.raises(ValueError, match="unknown state"):
        set_state(path, "done")
    assert read_progress(path)["state"] == "failed"


def test_no_file_yet_reads_as_starting_with_every_field(tmp_path):
    assert read_progress(tmp_path / "missing.json") == progress.EMPTY
    assert progress.EMPTY["state"] == "starting"


def get_training(tmp_path, **config) -> dict:
    client = create_app(offline_config(tmp_path, **config)).test_client()
    response = client.get("/api/training")
    assert response.status_code == 200 and response.content_type == "application/json"
    answer = response.get_json()
    schema = training()["responses"]["200"]["content"]["application/json"]["schema"]
    Draft202012Validator(schema).validate(answer)  # what the description promises
    return answer


def test_the_endpoint_shows_the_progress_file_as_written(tmp_path, clock):
    path = tmp_path / "progress.json"
    tracker = TrainingProgress(path, epochs=12, done=[])
    clock.now += 40
    tracker.epoch_done(record(0, 0.75, 0.31))
    answer = get_training(tmp_path, PROGRESS_FILE=str(path))
    assert answer == json.loads(path.read_text())
    assert answer["state"] == "training" and answer["epoch"] == 1 and answer["epochs"] == 12
    assert answer["seconds_left"] == 440.0 and answer["history"][0]["val_miou"] == 0.31

    set_state(path, "ready", "TorchServe serves the model")
    assert get_training(tmp_path, PROGRESS_FILE=str(path))["state"] == "ready"


def test_the_endpoint_before_the_file_and_without_one(tmp_path):
    waiting = get_training(tmp_path, PROGRESS_FILE=str(tmp_path / "not-yet.json"))
    assert waiting["state"] == "starting" and waiting["history"] == []
    alone = get_training(tmp_path)  # an app that waits for no training (a deployment's)
    assert alone["state"] == "ready" and alone["epochs"] is None
