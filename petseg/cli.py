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
    petseg --instances FILE models ...       the same model command on every instance

The serving state (config/serving.json, or --state) declares the versions, the default and
the workers: every start applies it, and `petseg models` changes write it once TorchServe
accepted them, so they survive restarts.

A failure is one line on stderr and exit status 2 (no traceback): a missing file, TorchServe
not running, TorchServe refusing a call.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from handler.protocol import OUTPUTS, Ports
from model_training.commands import COMMANDS as TRAINING_COMMANDS
from model_training.commands import run as run_training
from petseg.bulk import photos
from petseg.packaging import archive
from petseg.rollout import kube_api, kube_decider, trial_status
from petseg.rollout.decider import Fleet, Recorder, StateFile
from petseg.serving import changes, foreground, launcher, models, reconcile, state
from torchserve_client import ServingReport, TorchServeError

if TYPE_CHECKING:  # the web app's imports, only for `cluster start`
    from petseg.fleet.autoscale import Scaling

USER_ERRORS = (
    TorchServeError,
    OSError,
    ValueError,
    RuntimeError,
    subprocess.CalledProcessError,
)
"""What a user's input or a stopped TorchServe can cause (a dataset error is a ValueError,
a wait for readiness that runs out a TimeoutError, which is an OSError)."""


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


def fleet(args: argparse.Namespace, instance: launcher.Instance) -> list[launcher.Instance]:
    """The instances a command acts on: the one from --workdir, or those --instances lists."""
    if not args.instances:
        return [instance]
    return [
        launcher.running_instance(Path(workdir), args.model_store)
        for workdir in args.instances.read_text().split()
    ]


def manage(args: argparse.Namespace, instance: launcher.Instance) -> int:
    """`petseg models`: a look at what is served, or a change of it and of the state."""
    if args.action in ("list", "describe"):
        return operate(models.models)(args, instance)
    return changes.command(args, fleet(args, instance), models.show)


def rollout(args: argparse.Namespace, instance: launcher.Instance) -> int:
    """`petseg rollout`: a trial of a version on live traffic, changed as the state is."""
    members = fleet(args, instance)
    if args.action == "status":
        state_file, _ = changes.state_of(members[0], args.state)
        return trial_status.show(state_file, members, args.proxy or [trial_status.DEMO_PROXY])
    if args.action == "watch":
        return watch(args, members)
    return changes.command(args, members, models.show)


def watch(args: argparse.Namespace, members: list[launcher.Instance]) -> int:
    """`petseg rollout watch`: the fleet's decider, until SIGTERM or Ctrl-C
    (petseg.rollout.decider)."""
    import signal
    import threading

    from petseg.rollout.decider import Decider

    recorder, fleet_of, where = decider_parts(args, members)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    print(f"deciding on the rollout of {where} every {args.interval:g} s", flush=True)
    Decider(recorder, fleet_of).run(stop, args.interval, args.heartbeat)
    return 0


def decider_parts(
    args: argparse.Namespace, members: list[launcher.Instance]
) -> tuple[Recorder, Callable[[], Fleet], str]:
    """The decider's recorder and fleet for where it runs, and the record in words: a
    Kubernetes namespace (--kubernetes), a `petseg cluster` folder, or --instances/--proxy."""
    if args.kubernetes:
        name, port = kube_decider.service_address(args.service)
        state_file = args.state or state.STATE_FILE
        api = kube_api.ApiServer(args.api_server, args.service_account)
        recorder = kube_decider.ConfigMapRecorder(state_file, args.decisions, api, args.config_map)
        where = f"{state_file} with the decisions of ConfigMap {args.config_map}"
        return recorder, lambda: kube_decider.headless_fleet(name, port), where
    if args.cluster:
        from petseg.fleet import cluster  # the web app's imports, only for this command

        state_file = Path(cluster.Cluster.load(args.cluster).state)
        return StateFile(state_file), lambda: cluster.Cluster.load(args.cluster).fleet(), state_file
    state_file, _ = changes.state_of(members[0], args.state)
    proxies = args.proxy or [trial_status.DEMO_PROXY]
    return StateFile(state_file), lambda: Fleet(fleet(args, members[0]), proxies), str(state_file)


def operate(action: Callable) -> Callable[[argparse.Namespace, launcher.Instance], int]:
    """A command against the running TorchServe, or against every instance the --instances
    file lists (a fleet), each answer under its instance's folder; exit 2 if any failed."""

    def command(args: argparse.Namespace, instance: launcher.Instance) -> int:
        if not args.instances:
            models.show(action(args, instance.client(timeout=args.timeout)))
            return 0
        failed = 0
        for member in fleet(args, instance):
            workdir = member.workdir
            print(f"== {workdir}", flush=True)
            try:
                models.show(action(args, member.client(timeout=args.timeout)))
            except USER_ERRORS as exc:
                print(f"petseg: error: {workdir}: {exc}", file=sys.stderr, flush=True)
                failed += 1
        return 2 if failed else 0

    return command


def predict_photos(args: argparse.Namespace, instance: launcher.Instance) -> int:
    """One photo as always (the answer to -o or stdout, from each --instances member); several
    photos, a folder or a glob: a bulk run into --out-dir."""
    if args.out_dir or args.url or photos.many(args.images):
        from petseg.bulk import (
            predict as bulk,  # numpy, Pillow, tqdm, pycocotools: only for this command
        )

        return bulk.command(args, instance)
    return operate(models.predict)(args, instance)


def run_cluster(args: argparse.Namespace, instance: launcher.Instance) -> int:
    """start | roll | heal | keep | stop: several instances behind nginx on this machine."""
    from petseg.fleet import cluster, keeper  # the web app's imports, only for this command

    root = args.root
    if args.action == "start":
        state_file = args.state or state.STATE_FILE
        scaling = cluster_scaling(args)
        count = args.count or (scaling.min if scaling else 2)
        started = cluster.start_cluster(
            count,
            args.model_store,
            state_file,
            root=root,
            port=args.port,
            scaling=scaling and scaling.as_dict(),
        )
        cluster.start_keeper(started)
        print(f"{count} instances behind nginx: {started.url}/ (serving state {state_file})")
        if scaling:
            print(
                f"scaled between {scaling.min} and {scaling.max} instances on the load per "
                f"worker (target {scaling.target:g})"
            )
        print(f"instances file: {Path(started.root) / cluster.INSTANCES_FILE} (--instances)")
        print(f"kept by process {started.keeper_pid}: it heals the fleet and runs the decider")
    elif args.action == "keep":
        return keeper.keep(root)
    elif args.action == "scale":
        bounds = None if args.fixed else cluster_scaling(args)
        if bounds is None and not args.fixed:
            raise SystemExit("petseg cluster scale: give --max (and --min), or --fixed")
        with cluster.locked(root):
            running = cluster.Cluster.load(root)
            running.scaling = bounds and bounds.as_dict()
            running.save()
        print(
            "fixed size: the keeper scales no more"
            if bounds is None
            else f"the keeper scales between {bounds.min} and {bounds.max} instances"
        )
    elif args.action == "stop":
        cluster.stop_cluster(cluster.Cluster.load(root))
        print("cluster stopped")
    else:
        with cluster.locked(root):
            running = cluster.Cluster.load(root)
            if args.action == "roll":
                cluster.roll(running)
                print(f"every instance replaced; each applied {running.state}")
            else:
                replaced = cluster.heal(running)
                print(f"{len(replaced)} dead instance(s) replaced; each applied {running.state}")
    return 0


def cluster_scaling(args: argparse.Namespace) -> Scaling | None:
    """The autoscaler's bounds from `cluster start`'s options (None: a fixed size); a clear
    exit for bounds that make no sense."""
    from petseg.fleet.autoscale import Scaling

    if args.max is None:
        if args.min is not None:
            raise SystemExit(f"petseg cluster {args.action}: --min needs --max")
        return None
    try:
        pace = {"target": args.target_load, "scale_in_after_s": args.scale_in_after}
        given = {name: value for name, value in pace.items() if value is not None}
        scaling = Scaling(args.min or 1, args.max, **given)
    except ValueError as exc:
        raise SystemExit(f"petseg cluster {args.action}: {exc}") from None
    count = getattr(args, "count", None)
    if count is not None and not scaling.min <= count <= scaling.max:
        raise SystemExit(f"petseg cluster start: -n {count} is outside --min/--max")
    return scaling


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

    add_operations(commands)
    add_rollout(commands)
    add_cluster(commands)
    return parser


def add_rollout(commands: argparse._SubParsersAction) -> None:
    timeout = argparse.ArgumentParser(add_help=False)
    timeout.add_argument("--timeout", type=float, default=120, help="seconds per call")
    trial = commands.add_parser("rollout", help="shadow, canary, promote or abort a new version")
    actions = trial.add_subparsers(dest="action", required=True)
    for mode, summary in (
        ("shadow", "also send PERCENT%% of uploads to VERSION and compare the masks"),
        ("canary", "answer PERCENT%% of uploads with VERSION"),
    ):
        start = actions.add_parser(mode, parents=[timeout], help=summary)
        start.add_argument("version", help="a registered version (not the default)")
        start.add_argument("--percent", type=float, required=True)
        start.add_argument("--max-error-ratio", type=float, help="stop above it (default 0.05)")
        start.add_argument("--min-agreement", type=float, help="shadow: stop below (0.90)")
        start.add_argument("--min-requests", type=int, help="judge after as many (50)")
    actions.add_parser("promote", parents=[timeout], help="make the version on trial the default")
    abort = actions.add_parser(
        "abort", parents=[timeout], help="end the trial: the default serves all"
    )
    abort.add_argument("--reason", default="aborted by hand", help="kept in the record")
    watch = actions.add_parser(
        "watch", help="the fleet's decider: abort the trial on every proxy's summed figures"
    )
    fleet = watch.add_mutually_exclusive_group()
    fleet.add_argument("--proxy", action="append", help="a proxy's operators' listener (repeat)")
    fleet.add_argument("--cluster", type=Path, metavar="ROOT", help="a `petseg cluster`'s folder")
    fleet.add_argument(
        "--kubernetes",
        action="store_true",
        help="in the petseg-decider pod: the proxies of every ready server pod, the decision "
        "recorded in a ConfigMap through the API server (docs/containers-and-kubernetes.md)",
    )
    watch.add_argument("--interval", type=float, default=2.0, help="seconds between looks")
    watch.add_argument(
        "--heartbeat", type=Path, metavar="FILE", help="touched after each look (a probe's)"
    )
    add_kubernetes_watch(watch)
    status = actions.add_parser("status", help="the trial and each proxy's live figures")
    status.add_argument(
        "--proxy",
        action="append",
        help="a web proxy's operators' listener (repeat for several; default: "
        f"{trial_status.DEMO_PROXY}, `make run`'s)",
    )
    trial.set_defaults(func=rollout)


def add_kubernetes_watch(watch: argparse.ArgumentParser) -> None:
    """`petseg rollout watch --kubernetes`: where the decider's pod finds what it needs."""
    pod = watch.add_argument_group("with --kubernetes (the defaults are the manifests')")
    for option, kind, default, metavar, summary in (
        ("--service", str, kube_decider.PROXIES_SERVICE, "NAME:PORT", "the server pods' "
         "headless Service, and their proxies' operators' port"),
        ("--decisions", Path, kube_decider.DECISIONS_FILE, "FILE", "the decisions "
         "ConfigMap's key, mounted"),
        ("--config-map", str, kube_decider.CONFIG_MAP, "NAME", "the decisions ConfigMap"),
        ("--api-server", str, kube_api.API_SERVER, "URL", "the API server"),
        ("--service-account", Path, kube_api.SERVICE_ACCOUNT, "DIR", "the pod's "
         "ServiceAccount token, CA and namespace"),
    ):  # fmt: skip
        pod.add_argument(
            option, type=kind, default=default, metavar=metavar, help=f"{summary} (%(default)s)"
        )


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


def add_cluster(commands: argparse._SubParsersAction) -> None:
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--root", type=Path, default=launcher.ROOT / "logs" / "cluster", help="the cluster's folder"
    )
    fleet = commands.add_parser("cluster", help="several instances behind nginx, on this machine")
    actions = fleet.add_subparsers(dest="action", required=True)
    bounds = argparse.ArgumentParser(add_help=False)
    scaling = bounds.add_argument_group(
        "autoscaling", "follow the proxies' load per worker between --min and --max (the keeper)"
    )
    scaling.add_argument("--min", type=int, help="fewest instances (default 1)")
    scaling.add_argument("--max", type=int, help="most instances; without it, a fixed size")
    scaling.add_argument(
        "--target-load",
        type=float,
        help="calls under way per ready worker to aim at (default 3: half a batch)",
    )
    scaling.add_argument(
        "--scale-in-after",
        type=float,
        metavar="SECONDS",
        help="scale in only after the load asked for fewer this long (default 60)",
    )
    begin = actions.add_parser(
        "start",
        parents=[where, bounds],
        help="N instances (TorchServe + web proxy), nginx, the keeper",
    )
    begin.add_argument("-n", "--count", type=int, help="instances (default: 2, or --min)")
    begin.add_argument("--port", type=int, default=8000, help="nginx's port on 127.0.0.1")
    scale = actions.add_parser(
        "scale",
        parents=[where, bounds],
        help="new autoscaling bounds for a running cluster (--fixed: none), followed by its keeper",
    )
    scale.add_argument("--fixed", action="store_true", help="stop autoscaling; keep the size")
    for name, summary in (
        ("roll", "replace the instances one by one; each applies the state"),
        ("heal", "replace instances whose processes died, now"),
        ("keep", "heal the fleet and run the rollout's decider until SIGTERM (`start` runs it)"),
        ("stop", "stop the keeper, nginx and every instance"),
    ):
        actions.add_parser(name, parents=[where], help=summary)
    fleet.set_defaults(func=run_cluster)


def add_operations(commands: argparse._SubParsersAction) -> None:
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
        "--workers", type=int, help="workers of the version (default: its model-config.yaml's)"
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = get_args_parser()
    try:
        args, rest = parser.parse_known_args(argv)
        args.rest = rest
        args.words = argv[argv.index(args.command) :]  # the command as typed, for the record
        if args.rest and args.func is not train:
            parser.error(f"unrecognized arguments: {' '.join(args.rest)}")
        if getattr(args, "prepare", None) and not args.progress:
            parser.error("run --prepare needs --progress FILE: where the page reads the training")
        if args.func is config:
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
