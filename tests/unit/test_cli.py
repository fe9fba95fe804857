"""The `petseg` command's surface without a TorchServe: help for every command, and failures as
one line with exit status 2. Slow: the training commands' help loads torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from petseg.serving.launcher import ROOT, free_ports
from tests.support.cli import petseg

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("--workdir", "/nonexistent", "models", "list"), "key file"),
        (("predict", "/no/such/photo.jpg"), "No such file"),
        (("predict", "."), "--out-dir"),  # a folder: a bulk run, which needs somewhere to write
        (("predict", "/no/such/*.jpg", "--out-dir", "/tmp/x"), "no file matches"),
        (("predict", ".", "--out-dir", "/tmp/x", "--coco-polygons"), "needs --coco FILE"),
        (("archive", "--export-dir", "/no/such/export"), "model_spec.json"),
        (("train", "--data", "/no/such/data", "--out", "/tmp/x"), "/no/such/data"),
    ],
)
def test_errors_are_one_line_and_exit_2(argv, words, tmp_path):
    done = petseg("--workdir", str(tmp_path), *argv) if argv[0] != "--workdir" else petseg(*argv)
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("petseg: error:") and words in done.stderr, done.stderr


@pytest.mark.parametrize(
    "command",
    [
        "synth",
        "train",
        "evaluate",
        "export",
        "archive",
        "serve",
        "stop",
        "status",
        "run",
        "models",
        "predict",
        "key",
        "rotate",
    ],
)
def test_every_command_has_help(command):
    done = petseg(command, "--help", timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("usage: petseg"), done


def test_real_data_without_reachable_imagenet_weights_stops_at_once(kaggle_dir, tmp_path):
    closed = f"http://127.0.0.1:{free_ports(1)[0]}"  # a hub that is not there
    empty_cache = str(tmp_path / "hub")
    env = {"HF_ENDPOINT": closed, "HF_HUB_CACHE": empty_cache}
    done = petseg("train", "--data", str(kaggle_dir), "--out", str(tmp_path / "run"), env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "--encoder-weights PATH" in done.stderr and "--encoder-weights none" in done.stderr
    assert not (tmp_path / "run" / "last.pt").exists()


def test_config_for_a_container_sends_every_log_to_stdout_at_the_levels_of_config(tmp_path):
    from xml.etree import ElementTree

    from petseg.serving.launcher import LOG_CONFIG

    result = petseg("--workdir", str(tmp_path), "config", "--host", "0.0.0.0", "--logs", "stdout")
    assert result.returncode == 0, result.stderr
    rendered = ElementTree.parse(tmp_path / "log4j2.xml").getroot()
    source = ElementTree.parse(LOG_CONFIG).getroot()
    assert [(a.tag, a.get("target")) for a in rendered.find("Appenders")] == [
        ("Console", "SYSTEM_OUT")
    ]
    assert {ref.get("ref") for ref in rendered.iter("AppenderRef")} == {"STDOUT"}
    levels = [(logger.get("name"), logger.get("level")) for logger in source.find("Loggers")]
    assert [(lg.get("name"), lg.get("level")) for lg in rendered.find("Loggers")] == levels
    assert "0.0.0.0" in (tmp_path / "config.properties").read_text()


def test_config_for_files_writes_no_log_config(tmp_path):
    assert petseg("--workdir", str(tmp_path), "config").returncode == 0
    assert not (tmp_path / "log4j2.xml").exists()


def test_run_prepare_without_its_progress_file_is_refused_before_anything_starts(tmp_path):
    command = [sys.executable, "-m", "petseg", "--workdir", str(tmp_path), "run", "--prepare"]
    done = subprocess.run(
        [*command, f"touch {tmp_path}/ran"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "run --prepare needs --progress FILE" in done.stderr
    assert not (tmp_path / "ran").exists() and "page:" not in done.stdout
