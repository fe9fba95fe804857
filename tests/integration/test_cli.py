"""The `petseg` command as users run it: a real process against a real TorchServe."""

from __future__ import annotations

import json

import requests
from PIL import Image

from petseg.serving.launcher import Instance
from tests.support import images
from tests.support.cli import petseg


def test_models_predict_and_keys_against_a_running_torchserve(server: Instance, tmp_path):
    workdir = ("--workdir", str(server.workdir))
    listed = petseg(*workdir, "models", "list")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["models"][0]["modelName"] == "petseg"
    assert petseg(*workdir, "status").returncode == 0

    photo = tmp_path / "cat.jpg"
    photo.write_bytes(images.jpeg(100, 80))
    mask = tmp_path / "mask.png"
    done = petseg(*workdir, "predict", str(photo), "--output", "mask", "-o", str(mask))
    assert done.returncode == 0, done.stderr
    with Image.open(mask) as written:
        assert written.size == (100, 80)

    old = petseg(*workdir, "key", "inference").stdout.strip()
    assert old == server.keys()["inference"]
    rotated = petseg(*workdir, "rotate", "inference")
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.strip() == server.keys()["inference"] != old
    stale = requests.post(
        server.url("inference", "/predictions/petseg"),
        data=images.jpeg(),
        headers={"Authorization": f"Bearer {old}", "Content-Type": "image/jpeg"},
        timeout=30,
    )
    assert stale.status_code == 400


def test_refusals_by_torchserve_are_one_line_too(server: Instance, tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("not a picture")
    done = petseg("--workdir", str(server.workdir), "predict", str(junk))
    assert done.returncode == 2 and "HTTP 415" in done.stderr and done.stderr[-1:] == "\n"
    done = petseg("--workdir", str(server.workdir), "models", "describe", "9.9")
    assert done.returncode == 2 and "HTTP 404" in done.stderr, done.stderr
