"""`petseg serve --foreground`: a container's main process (the model-server image, the pod).

It starts TorchServe in its own process group (unpacked archives and any log files under the
system's temporary folder: the workdir holds keys, config and report only), applies the serving
state, and then waits for TorchServe to end. The container's init (tini -g) sends SIGTERM to the
whole group: TorchServe stops its workers, and this process, once TorchServe is gone, ends by
the same signal, so the container's exit status says "stopped by SIGTERM" as it did when
TorchServe was the command.

What the state could not serve is printed (the container's log) and named by `petseg status`,
the probes' command; TorchServe keeps running either way: a pod that serves part of its state
stays up, and one that can serve nothing stays unready instead of restarting in a loop. Only a
state file that cannot be read at all ends the container: that is a broken deployment.

With --decisions (a Kubernetes pod), the state applied has the fleet's decision merged in, and
the decisions file is followed while TorchServe runs (petseg.serving.pod_decisions).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from petseg.serving import launcher, reconcile
from petseg.serving.pod_decisions import FOLLOW_INTERVAL_S, Follower
from torchserve_client import TorchServeError


class Terminated(Exception):
    """SIGTERM arrived: the container is being stopped."""


def serve(
    args: argparse.Namespace, instance: launcher.Instance, state_file: Path, durable: bool
) -> int:
    instance.workdir.mkdir(parents=True, exist_ok=True)
    log_config = launcher.LOG_CONFIG
    if args.logs == "stdout":
        log_config = launcher.render_log_config(instance.workdir)
    instance = replace(instance, scratch=Path(tempfile.gettempdir()) / "petseg")
    follower = None
    if args.decisions is not None:
        follower = Follower(state_file, args.decisions, instance)
        state_file = follower.path
    process = launcher.start(instance, args.host, log_config, own_session=False)

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    signal.signal(signal.SIGTERM, terminate)
    try:
        bring_up(instance, process, state_file, durable, args.timeout)
        return wait(process, follower)
    except Terminated:
        return stopped_by_sigterm(process)
    except BaseException:
        process.terminate()
        process.wait()
        raise


def bring_up(
    instance: launcher.Instance,
    process: subprocess.Popen,
    state_file: Path,
    durable: bool,
    timeout: float,
) -> None:
    """Apply the state and say how it went; only an unreadable state file raises."""
    try:
        report = launcher.bring_up(instance, process, state_file, durable, timeout)
        print("\n".join(reconcile.describe(report)), flush=True)
    except (launcher.NothingServed, TimeoutError, TorchServeError) as exc:
        print(f"petseg: not ready: {exc} (TorchServe keeps running)", file=sys.stderr, flush=True)


def wait(process: subprocess.Popen, follower: Follower | None) -> int:
    """Until TorchServe ends; meanwhile, the fleet's decisions followed, if there are any."""
    while follower is not None:
        try:
            return process.wait(timeout=FOLLOW_INTERVAL_S)
        except subprocess.TimeoutExpired:
            follower.look()
    return process.wait()


def stopped_by_sigterm(process: subprocess.Popen) -> int:
    """Wait for TorchServe (which got the same SIGTERM from the container's init), then end
    by SIGTERM ourselves."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    process.terminate()
    process.wait()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
    return 128 + signal.SIGTERM  # not reached
