"""python -m model_training {synth,train,evaluate,export} ...: the training half's commands
alone (the `petseg` command offers the same ones)."""

from __future__ import annotations

import sys

from model_training.commands import COMMANDS, run
from model_training.datasets import DatasetError


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m model_training {{{','.join(COMMANDS)}}} [--help]", file=sys.stderr)
        return 2
    try:
        run(argv[0], argv[1:], "python -m model_training")
    except (DatasetError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
