"""`petseg`: the one command for training, packaging, serving and operating petseg.

    petseg synth|train|evaluate|export ...   the training machine (see `petseg train --help`)
    petseg archive                           build model_store/petseg.mar from an export
    petseg serve | stop | status             TorchServe serving the state, in the background
    petseg config [--host H] [--logs stdout] TorchServe's config, rendered into --workdir
    petseg run                               the demo: TorchServe + the web page
    petseg models list|describe              what TorchServe serves now
    petseg models register|scale|set-default|unregister|apply
                                             change it, and the serving state with it
    petseg predict IMAGE [--output mask -o mask.png]
    petseg predict PHOTOS... --out-dir DIR [--overlay] [--coco FILE] [--resume] [--url URL]
                                             a folder of photos: masks, a COCO file, a report
    petseg key|rotate inference|management
    petseg cluster start|scale|roll|heal|stop
                                             several instances behind nginx, one state
    petseg rollout shadow|canary V --percent P | promote | abort | status
                                             try a new version on live traffic
    petseg label-studio serve|config          pre-annotations for a Label Studio project
    petseg --instances FILE models ...       the same model command on every instance

The serving state (config/serving.json, or --state) declares the versions, the default and
the workers: every start applies it, and `petseg models` changes write it once TorchServe
accepted them, so they survive restarts.

A failure is one line on stderr and exit status 2 (no traceback): a missing file, TorchServe
not running, TorchServe refusing a call.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from petseg.cli import cluster, labelling, operations, rollout, serving
from petseg.cli.instances import USER_ERRORS
from petseg.serving import launcher, state


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="petseg",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=launcher.DEFAULT_WORKDIR,
        help="TorchServe's folder: its config, logs and key_file.json (default: %(default)s)",
    )
    parser.add_argument("--model-store", type=Path, default=launcher.DEFAULT_STORE)
    parser.add_argument(
        "--instances",
        type=Path,
        help="a file naming one TorchServe folder a line (`petseg cluster start` writes one): "
        "models/predict/key/rotate act on each",
    )
    parser.add_argument(
        "--state",
        type=Path,
        help="the serving state file (default: the one the running instance applied, else "
        f"{state.STATE_FILE.relative_to(launcher.ROOT)})",
    )
    parser.add_argument(
        "--read-only-state",
        action="store_true",
        help="the deployment declares the state (a ConfigMap, an image): `petseg models` "
        "changes the running instance only, until it restarts",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serving.add_commands(commands)
    operations.add_commands(commands)
    rollout.add_commands(commands)
    cluster.add_commands(commands)
    labelling.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = get_args_parser()
    try:
        args, rest = parser.parse_known_args(argv)
        args.rest = rest
        args.words = argv[argv.index(args.command) :]  # the command as typed, for the record
        if args.rest and args.func is not serving.train:
            parser.error(f"unrecognized arguments: {' '.join(args.rest)}")
        if getattr(args, "prepare", None) and not args.progress:
            parser.error("run --prepare needs --progress FILE: where the page reads the training")
        if args.func is serving.config:
            instance = launcher.Instance(args.workdir, args.model_store)
        else:  # the one started from --workdir, wherever its ports are
            instance = launcher.running_instance(args.workdir, args.model_store)
        return args.func(args, instance)
    except USER_ERRORS as exc:
        print(f"petseg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
