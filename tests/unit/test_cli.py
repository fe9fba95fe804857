"""The `petseg` command's surface without a TorchServe: help for every command, and failures as
one line with exit status 2. Slow: the training commands' help loads torch."""

from __future__ import annotations

import pytest

from tests.support.cli import petseg

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("--workdir", "/nonexistent", "models", "list"), "key file"),
        (("predict", "/no/such/photo.jpg"), "No such file"),
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
