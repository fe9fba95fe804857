"""Which instances a command acts on, and how a failure is told: the one TorchServe from
--workdir, or every instance an --instances file lists (a fleet), each failure one line."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from petseg.serving import launcher, models
from torchserve_client import TorchServeError

USER_ERRORS = (
    TorchServeError,
    OSError,
    ValueError,
    RuntimeError,
    subprocess.CalledProcessError,
)
"""What a user's input or a stopped TorchServe can cause (a dataset error is a ValueError,
a wait for readiness that runs out a TimeoutError, which is an OSError)."""


def members_of(args: argparse.Namespace, instance: launcher.Instance) -> list[launcher.Instance]:
    """The instances a command acts on: the one from --workdir, or those --instances lists."""
    if not args.instances:
        return [instance]
    return [
        launcher.running_instance(Path(workdir), args.model_store)
        for workdir in args.instances.read_text().split()
    ]


def operate(action: Callable) -> Callable[[argparse.Namespace, launcher.Instance], int]:
    """A command against the running TorchServe, or against every instance the --instances
    file lists (a fleet), each answer under its instance's folder; exit 2 if any failed."""

    def command(args: argparse.Namespace, instance: launcher.Instance) -> int:
        if not args.instances:
            models.show(action(args, instance.client(timeout=args.timeout)))
            return 0
        failed = 0
        for member in members_of(args, instance):
            workdir = member.workdir
            print(f"== {workdir}", flush=True)
            try:
                models.show(action(args, member.client(timeout=args.timeout)))
            except USER_ERRORS as exc:
                print(f"petseg: error: {workdir}: {exc}", file=sys.stderr, flush=True)
                failed += 1
        return 2 if failed else 0

    return command
