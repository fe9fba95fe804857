"""`petseg models`, `predict`, `key` and `rotate`: what a running TorchServe serves, changed
(with the serving state), asked (one photo, or many: petseg.bulk) and its keys."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from handler.protocol import OUTPUTS
from petseg.bulk import photos
from petseg.cli.instances import members_of, operate
from petseg.serving import changes, launcher, models

if TYPE_CHECKING:
    from petseg.labelling.tasks_file import TasksFile


def add_commands(commands: argparse._SubParsersAction) -> None:
    """The commands that talk to a running TorchServe through its key file."""
    timeout = argparse.ArgumentParser(add_help=False)
    timeout.add_argument("--timeout", type=float, default=120, help="seconds per call")

    models_cmd = commands.add_parser("models", help="list, register, scale... model versions")
    actions = models_cmd.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=[timeout])
    actions.add_parser("describe", parents=[timeout]).add_argument("version", nargs="?")
    register = actions.add_parser("register", parents=[timeout], help="a .mar in the store")
    register.add_argument("archive")
    register.add_argument(
        "--workers",
        type=int,
        help="workers of the version (default: config.properties' default_workers_per_model)",
    )
    scale = actions.add_parser("scale", parents=[timeout])
    scale.add_argument("workers", type=int)
    scale.add_argument("--version", help="default: the default version")
    actions.add_parser("set-default", parents=[timeout]).add_argument("version")
    actions.add_parser("unregister", parents=[timeout]).add_argument("version")
    actions.add_parser(
        "apply", parents=[timeout], help="bring the running instance(s) to the serving state"
    )
    models_cmd.set_defaults(func=manage)

    predict = commands.add_parser(
        "predict", parents=[timeout], help="segment a photo, or files, folders and globs in bulk"
    )
    predict.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="a photo; several, a folder (recursive) or a quoted glob: a bulk run (--out-dir)",
    )
    predict.add_argument("--output", choices=list(OUTPUTS), default="json", help="one photo")
    predict.add_argument("-o", "--out", type=Path, help="one photo: write the answer here")
    add_bulk(predict)
    predict.set_defaults(func=predict_photos)
    for name, action in (("key", models.key), ("rotate", models.rotate)):
        summary = action.__doc__.split(" (")[0]
        command = commands.add_parser(name, parents=[timeout], help=summary)
        command.add_argument("kind", choices=["inference", "management"])
        command.set_defaults(func=operate(action))


def add_bulk(predict: argparse.ArgumentParser) -> None:
    """`petseg predict` on many photos (petseg.bulk.predict)."""
    bulk_run = predict.add_argument_group("bulk run (several photos, a folder, a glob)")
    bulk_run.add_argument(
        "--out-dir",
        type=Path,
        metavar="DIR",
        help="masks (IMAGE's path, .png), report.json, the journal",
    )
    bulk_run.add_argument("--overlay", action="store_true", help="and overlays (.overlay.jpg)")
    bulk_run.add_argument("--coco", type=Path, metavar="FILE", help="write a COCO dataset file")
    bulk_run.add_argument(
        "--coco-polygons", action="store_true", help="polygons in it instead of (exact) RLE"
    )
    bulk_run.add_argument(
        "--tolerance",
        type=float,
        default=1.0,
        metavar="PIXELS",
        help="polygon simplification (default: %(default)s)",
    )
    bulk_run.add_argument(
        "--concurrency",
        type=int,
        default=16,
        metavar="N",
        help="photos in flight, enough to keep the server's batches full (default: %(default)s)",
    )
    bulk_run.add_argument(
        "--resume", action="store_true", help="skip photos done unchanged by an earlier run"
    )
    bulk_run.add_argument(
        "--limit", type=int, metavar="N", help="only the first N photos by name (a trial)"
    )
    bulk_run.add_argument(
        "--url", help="send to the web API there (a proxy, a balancer), not to --workdir's"
    )
    studio = predict.add_argument_group("Label Studio tasks of a bulk run")
    studio.add_argument(
        "--label-studio", type=Path, metavar="FILE", help="write the photos as tasks to import"
    )
    studio.add_argument(
        "--label-studio-images",
        metavar="PREFIX",
        help="each task's image URL: PREFIX + the photo's name under the input folder "
        "(default: /data/local-files/?d=, Label Studio's local files)",
    )
    studio.add_argument(
        "--label-config", type=Path, metavar="XML", help="the project's labelling config"
    )


def manage(args: argparse.Namespace, instance: launcher.Instance) -> int:
    """`petseg models`: a look at what is served, or a change of it and of the state."""
    if args.action in ("list", "describe"):
        return operate(models.models)(args, instance)
    return changes.command(args, members_of(args, instance), models.show)


def predict_photos(args: argparse.Namespace, instance: launcher.Instance) -> int:
    """One photo as always (the answer to -o or stdout, from each --instances member); several
    photos, a folder or a glob: a bulk run into --out-dir."""
    if args.out_dir or args.url or args.label_studio or photos.many(args.images):
        from petseg.bulk import (
            predict as bulk,  # numpy, Pillow, tqdm, pycocotools: only for this command
        )

        return bulk.command(args, instance, label_studio_tasks(args))
    return operate(models.predict)(args, instance)


def label_studio_tasks(args: argparse.Namespace) -> TasksFile | None:
    """The Label Studio tasks file a bulk run also writes, if asked for."""
    if args.label_studio is None:
        if args.label_config:
            raise ValueError("--label-config is for --label-studio FILE")
        return None
    from petseg.labelling.tasks_file import DEFAULT_IMAGES, TasksFile

    config = args.label_config.read_text() if args.label_config else None
    images = args.label_studio_images or DEFAULT_IMAGES
    return TasksFile(args.label_studio, images, config, args.tolerance)
