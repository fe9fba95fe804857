"""`petseg synth|train|evaluate|export`, `archive`, `serve`, `stop`, `config`, `status` and
`run`: the commands that make a model and start or stop one instance serving it."""

from __future__ import annotations

import argparse
from pathlib import Path

from handler.protocol import Ports
from model_training.commands import COMMANDS as TRAINING_COMMANDS
from model_training.commands import run as run_training
from petseg.packaging import archive
from petseg.serving import foreground, launcher, reconcile, state
from torchserve_client import ServingReport, TorchServeError


def add_commands(commands: argparse._SubParsersAction) -> None:
    # Their arguments (--help included) go to the training commands' own parsers.
    for name, summary in TRAINING_COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False).set_defaults(func=train)

    build_cmd = commands.add_parser("archive", help="build a .mar from an exported model")
    build_cmd.add_argument("--export-dir", type=Path, default=launcher.ROOT / "exported" / "petseg")
    build_cmd.add_argument("--out", type=Path, default=launcher.DEFAULT_STORE)
    build_cmd.add_argument("--name", default="petseg", help="archive file name (NAME.mar)")
    build_cmd.add_argument("--version", help="archive version (default: the spec's)")
    build_cmd.set_defaults(func=build)

    serve_cmd = commands.add_parser("serve", help="start TorchServe serving the state")
    serve_cmd.add_argument("--timeout", type=float, default=180, help="seconds to wait for ready")
    serve_cmd.add_argument(
        "--foreground",
        action="store_true",
        help="run until TorchServe ends, its logs on stdout if --logs stdout (a container's "
        "command)",
    )
    serve_cmd.add_argument(
        "--archives-from",
        type=Path,
        help="copy the archives the state names from this folder into --model-store first",
    )
    serve_cmd.add_argument(
        "--model-config",
        type=Path,
        help="with --archives-from: put this model-config.yaml into each copy (a ConfigMap's)",
    )
    serve_cmd.add_argument(
        "--decisions",
        type=Path,
        metavar="FILE",
        help="with --foreground and --read-only-state: the fleet's decisions file (the "
        "petseg-decisions ConfigMap's key, mounted as a folder): merged into the state at "
        "start and followed while TorchServe runs",
    )
    serve_cmd.add_argument(
        "--free-ports",
        action="store_true",
        help="listen on unused ports instead of the configured ones (another instance beside "
        "one; the other commands find them in --workdir)",
    )
    serve_cmd.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config.properties setting for this start (e.g. number_of_gpu=1)",
    )
    add_host_and_logs(serve_cmd)
    serve_cmd.set_defaults(func=serve)
    commands.add_parser("stop", help="stop TorchServe and its workers").set_defaults(func=stop)
    config_cmd = commands.add_parser("config", help="write config.properties into --workdir")
    add_host_and_logs(config_cmd)
    config_cmd.set_defaults(func=config)
    commands.add_parser("status", help="ready workers; exit 1 if none").set_defaults(func=status)

    run_cmd = commands.add_parser("run", help="the demo: TorchServe + the web page")
    run_cmd.add_argument("--host", default="127.0.0.1")
    run_cmd.add_argument("--port", type=int, default=5000)
    run_cmd.add_argument("--threads", type=int, default=16, help="web server threads")
    run_cmd.add_argument(
        "--external",
        action="store_true",
        help="front a TorchServe that runs elsewhere, as the PETSEG_* variables say; start none",
    )
    run_cmd.add_argument(
        "--prepare",
        metavar="COMMAND",
        help="a shell command that makes the archive the state serves (`make run`: `make "
        "archive`, which trains the demo model if there is none): the page starts at once and "
        "shows the training's progress, TorchServe once COMMAND is done",
    )
    run_cmd.add_argument(
        "--progress",
        type=Path,
        help="with --prepare: the progress file COMMAND's training writes (`petseg train "
        "--progress`), which the page shows",
    )
    run_cmd.set_defaults(func=demo)


def add_host_and_logs(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--host",
        default=launcher.LOOPBACK,
        help="where inference and metrics listen (0.0.0.0 in a container; management always "
        "on %(default)s)",
    )
    command.add_argument(
        "--logs",
        choices=["files", "stdout"],
        default="files",
        help="stdout: also write a log4j2.xml sending TorchServe's logs to stdout (a "
        "container's); files: config/log4j2.xml, the logs/ folder (default)",
    )


def train(args: argparse.Namespace, instance: launcher.Instance) -> int:
    """synth, train, evaluate or export, with the arguments the top-level parser left over."""
    run_training(args.command, args.rest, "petseg")
    return 0


def serve(args: argparse.Namespace, running: launcher.Instance) -> int:
    """Start TorchServe and apply the serving state (to one already running from --workdir:
    apply it again); print what was done and where everything is. --foreground: until
    TorchServe ends (a container's main process)."""
    state_file = args.state or state.STATE_FILE
    durable = not args.read_only_state
    if args.decisions is not None and (durable or not args.foreground):
        raise ValueError(
            "--decisions is for a pod's `petseg --read-only-state serve --foreground`: there "
            "the deployment declares the state, and the fleet's decider records in that file"
        )
    if not args.foreground and running.client().health().reachable:
        print("TorchServe is already running: applying the serving state")
        client = running.client(timeout=args.timeout)
        report = reconcile.apply_state(
            client, state_file, running.model_store, running.workdir, durable
        )
        return where(running, report)
    instance = new_instance(args)
    if args.archives_from:
        archive.stage_archives(
            state.load(state_file), args.archives_from, instance.model_store, args.model_config
        )
    if args.foreground:
        return foreground.serve(args, instance, state_file, durable)
    process = launcher.start(instance, host=args.host)
    try:
        report = launcher.bring_up(instance, process, state_file, durable, args.timeout)
    except (RuntimeError, TimeoutError, ValueError, TorchServeError):
        launcher.stop(instance, process)
        raise
    return where(instance, report)


def new_instance(args: argparse.Namespace) -> launcher.Instance:
    """The instance `serve` starts: the configured ports (or free ones), the --set settings."""
    malformed = [setting for setting in args.set if "=" not in setting]
    if malformed:
        raise ValueError(f"--set takes KEY=VALUE, not {malformed[0]!r}")
    settings = dict(setting.split("=", 1) for setting in args.set)
    ports = launcher.unused_ports() if args.free_ports else Ports()
    return launcher.Instance(args.workdir, args.model_store, ports, settings)


def where(instance: launcher.Instance, report: ServingReport) -> int:
    """What the start applied, and where everything is."""
    print("\n".join(reconcile.describe(report)))
    print(f"inference:  {instance.url('inference', '/predictions/petseg')}")
    print(f"management: {instance.url('management', '/models')}")
    print(f"metrics:    {instance.url('metrics', '/metrics')}")
    print(f"keys:       {instance.key_file}")
    print(f"logs:       {instance.workdir / 'logs'}")
    return 0


def status(args: argparse.Namespace, instance: launcher.Instance) -> int:
    """Ready (exit 0) once the serving state is applied and the default has a READY worker;
    what could not be served is named either way (the container's health and readiness)."""
    health = instance.client().health()
    print(f"petseg: {health.ready_workers} ready workers ({health.detail})")
    if health.report is not None:
        print("\n".join(reconcile.describe(health.report)))
    return 0 if health.ready else 1


def stop(args: argparse.Namespace, instance: launcher.Instance) -> int:
    launcher.stop(instance)
    print("TorchServe stopped")
    return 0


def config(args: argparse.Namespace, instance: launcher.Instance) -> int:
    """Render the config without starting TorchServe: the model-server image's build does."""
    print(f"wrote {launcher.render_config(instance, host=args.host)}")
    if args.logs == "stdout":
        print(f"wrote {launcher.render_log_config(instance.workdir)}")
    return 0


def build(args: argparse.Namespace, instance: launcher.Instance) -> int:
    path = archive.build_archive(args.export_dir, args.out, args.name, args.version)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def demo(args: argparse.Namespace, instance: launcher.Instance) -> int:
    from petseg.serving.demo import run  # the web app's imports, only for this command

    return run(args, instance)
