"""The training machine's commands (synth, train, evaluate, export): each one's arguments in
arguments.py and its work in a module with ``main(args)``; run by `petseg` and by
``python -m model_training``."""

from __future__ import annotations

import argparse
import importlib

from model_training import arguments

COMMANDS = {
    "synth": "make a synthetic dataset in the Oxford-IIIT Pet layout",
    "train": "train a U-Net/ResNet34 on a dataset folder",
    "evaluate": "score a checkpoint or an export on a held-out split",
    "export": "write a checkpoint as the folder an archive is built from",
}


def parser(command: str, prog: str = "python -m model_training") -> argparse.ArgumentParser:
    """The command's own parser, its summary above as the description."""
    built = argparse.ArgumentParser(prog=f"{prog} {command}", description=COMMANDS[command])
    getattr(arguments, command)(built)
    return built


def run(command: str, argv: list[str], prog: str) -> None:
    """Parse ``argv`` before the command's module (and torch) is imported, so that --help and a
    wrong flag answer at once; then run it (errors propagate)."""
    args = parser(command, prog).parse_args(argv)
    importlib.import_module(f"model_training.{command}").main(args)
