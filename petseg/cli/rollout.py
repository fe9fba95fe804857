"""`petseg rollout`: a trial of a version on live traffic (shadow, canary, promote, abort),
its status, and the fleet's decider (`rollout watch`) wherever it runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from petseg.cli.instances import members_of
from petseg.rollout import kube_api, kube_decider, trial_status
from petseg.rollout.decider import Fleet, Recorder, StateFile
from petseg.serving import changes, launcher, models, state


def add_commands(commands: argparse._SubParsersAction) -> None:
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


def rollout(args: argparse.Namespace, instance: launcher.Instance) -> int:
    """`petseg rollout`: a trial of a version on live traffic, changed as the state is."""
    members = members_of(args, instance)
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
    return (
        StateFile(state_file),
        lambda: Fleet(members_of(args, members[0]), proxies),
        str(state_file),
    )
