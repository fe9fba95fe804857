"""The training machine's commands (synth, train, evaluate, export), each a module with
``get_args_parser()`` and ``main(args)``; run by `petseg` and by ``python -m model_training``."""

from __future__ import annotations

import importlib

COMMANDS = {
    "synth": "make a synthetic dataset in the Oxford-IIIT Pet layout",
    "train": "train a U-Net/ResNet34 on a dataset folder",
    "evaluate": "score a checkpoint or an export on a held-out split",
    "export": "write a checkpoint as the folder an archive is built from",
}


def run(command: str, argv: list[str], prog: str) -> None:
    """Parse ``argv`` with the command's own parser and run it (errors propagate)."""
    module = importlib.import_module(f"model_training.{command}")
    parser = module.get_args_parser()
    parser.prog = f"{prog} {command}"
    module.main(parser.parse_args(argv))
