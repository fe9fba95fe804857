"""python -m model_training {synth,train,evaluate,export} ...: the training half's commands."""

from __future__ import annotations

import sys

from model_training import evaluate, export, synth, train
from model_training.datasets import DatasetError

COMMANDS = {"synth": synth, "train": train, "evaluate": evaluate, "export": export}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m model_training {{{','.join(COMMANDS)}}} [--help]", file=sys.stderr)
        return 2
    module = COMMANDS[argv[0]]
    parser = module.get_args_parser()
    parser.prog = f"python -m model_training {argv[0]}"
    try:
        module.main(parser.parse_args(argv[1:]))
    except (DatasetError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
