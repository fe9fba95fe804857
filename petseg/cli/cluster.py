"""`petseg cluster`: several instances behind nginx on this machine (petseg.fleet), started,
scaled, rolled, healed, kept and stopped."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from petseg.serving import launcher, state

if TYPE_CHECKING:  # the web app's imports, only for `cluster start`
    from petseg.fleet.autoscale import Scaling


def add_commands(commands: argparse._SubParsersAction) -> None:
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
        print(f"kept by process {started.keeper.pid}: it heals the fleet and runs the decider")
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
