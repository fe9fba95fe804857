"""`petseg run` (`make run`): TorchServe with petseg plus the web app, until Ctrl-C stops both.

Reuses a TorchServe that already runs from --workdir (`petseg serve`) and leaves it running;
otherwise starts one, applies the serving state to it (config/serving.json, or --state) and
stops it, workers included, on Ctrl-C or SIGTERM. With --prepare COMMAND (`make run`: the
archive, the demo model trained first if there is none) the page starts at once and shows the
progress of COMMAND's training, and TorchServe starts once COMMAND is done
(petseg.serving.supervisor); a failed step is shown on the page, and the exit status is 1. With
--external it only serves the page, in front of the TorchServe that the PETSEG_* variables name
(another host, a bench). The demo serves the proxy's metrics and status page on
``DEMO_METRICS_ADDRESS`` unless PETSEG_METRICS_ADDRESS says otherwise; --external follows that
variable alone (several proxies on one machine cannot share a port).

If the web server dies (its serve loop raises, or ends without Ctrl-C or SIGTERM), this says so
on stderr, stops the TorchServe it started (or says that the reused one keeps running) and
exits with status 1, so that whatever supervises it sees the failure and can restart it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Callable

from flask import Flask

from frontend_server import ENV_PREFIX, create_app
from frontend_server.wsgi import make_server, raise_fd_limit
from petseg.serving.launcher import Instance, bring_up, start, stop
from petseg.serving.reconcile import describe
from petseg.serving.state import STATE_FILE
from petseg.serving.supervisor import Preparation

DEMO_METRICS_ADDRESS = "127.0.0.1:5001"


def torchserve_running(instance: Instance) -> bool:
    return instance.client().health().reachable


def web_settings(instance: Instance) -> dict[str, str]:
    """The web app's settings for a TorchServe started on this machine: where it listens and
    where its keys are (create_app's names; ``web_environment`` as PETSEG_* variables)."""
    return {
        "TORCHSERVE_INFERENCE_URL": instance.url("inference"),
        "TORCHSERVE_MANAGEMENT_URL": instance.url("management"),
        "KEY_FILE": str(instance.key_file),
    }


def web_environment(instance: Instance, **settings: str) -> dict[str, str]:
    """This process's environment plus ``web_settings`` and ``settings`` as PETSEG_* variables:
    for a web app of its own (``external_command``) in front of ``instance``."""
    chosen = {**web_settings(instance), **settings}
    return {**os.environ, **{f"{ENV_PREFIX}_{name}": value for name, value in chosen.items()}}


def external_command(port: int) -> list[str]:
    """`petseg run --external` on ``port``: the web app alone, in a process of its own."""
    return [sys.executable, "-m", "petseg", "run", "--external", "--port", str(port)]


def run(args: argparse.Namespace, instance: Instance) -> int:
    raise_fd_limit()
    process = None
    preparation = None
    failure = None
    try:
        if args.external:
            app = create_app()
        else:
            metrics = os.environ.get(f"{ENV_PREFIX}_METRICS_ADDRESS", DEMO_METRICS_ADDRESS)
            settings = {**web_settings(instance), "METRICS_ADDRESS": metrics}
            state_file = args.state or STATE_FILE
            if torchserve_running(instance):
                if args.prepare:
                    print("TorchServe is already running: --prepare skipped", flush=True)
            elif args.prepare:
                preparation = Preparation(
                    args.prepare, args.progress, instance, state_file, not args.read_only_state
                )
                settings["PROGRESS_FILE"] = str(args.progress)
            else:
                print("starting TorchServe ...", flush=True)
                process = start(instance)
                report = bring_up(instance, process, state_file, not args.read_only_state)
                print("\n".join(describe(report)), flush=True)
            app = create_app(settings)
        failure = serve(app, args, preparation.start if preparation else None)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # reported, never swallowed: a supervisor must see the failure
        traceback.print_exc()
        failure = f"{type(exc).__name__}: {exc}"
    finally:
        if preparation is not None:
            preparation.stop()
        if process is not None:
            print("stopping TorchServe ...", flush=True)
            stop(instance, process)
    if failure is None and preparation is not None:
        failure = preparation.failure
    if failure is None:
        return 0
    started = process is not None or (preparation is not None and preparation.torchserve)
    torchserve = "stopped" if started else "not started here, left as it was"
    print(f"stopped by a failure ({failure}); TorchServe {torchserve}", file=sys.stderr)
    return 1


def serve(
    app: Flask, args: argparse.Namespace, listening: Callable[[], None] | None = None
) -> str | None:
    """Serve until Ctrl-C or SIGTERM (None), or until the web server dies: it raises, or its
    loop ends by itself (returns why). ``listening`` is called once the page answers (after
    the addresses are printed, so that its output follows them)."""
    server = make_server(app, args.host, args.port, args.threads)
    # Ctrl-C and SIGTERM both end the serve loop below, even when the shell that started us
    # ignored SIGINT (background jobs inherit SIG_IGN). They are the only way it may end without
    # a failure; waitress's run() returns quietly on a KeyboardInterrupt, so they are noted here.
    signals: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        signals.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    operator = ""
    if server.operator is not None:
        base = f"http://{app.config['METRICS_ADDRESS']}"
        operator = f"  operators:  {base}/status  {base}/metrics\n"
    print(
        f"\n  page:       http://{args.host}:{args.port}/\n"
        f"  API:        POST http://{args.host}:{args.port}/api/segment  (multipart 'file')\n"
        f"  health:     GET  http://{args.host}:{args.port}/api/health\n{operator}"
        f"  TorchServe: {app.config['TORCHSERVE_INFERENCE_URL']}/predictions/"
        f"{app.config['MODEL_NAME']} (keys: {app.config['KEY_FILE']})\n"
        f"  Ctrl-C stops {'the page' if args.external else 'everything'}.\n",
        flush=True,
    )
    try:
        if listening is not None:
            listening()
        server.run()
    finally:
        server.close()
    return None if signals else "its serve loop ended by itself"
