"""`petseg run` (`make run`): TorchServe with petseg plus the web app, until Ctrl-C stops both.

Reuses a TorchServe that already serves petseg (`petseg serve`) and leaves it running;
otherwise starts one and stops it, workers included, on Ctrl-C or SIGTERM. With --external it
only serves the page, in front of the TorchServe that the PETSEG_* variables name (another
host, a bench).
"""

from __future__ import annotations

import argparse
import signal

from frontend_server import create_app
from frontend_server.wsgi import make_server
from petseg.launcher import Instance, start, stop, wait_ready


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace, instance: Instance) -> int:
    process = None
    if args.external:
        app = create_app()
    else:
        if not instance.client().health().ready_workers:
            print("starting TorchServe ...", flush=True)
            process = start(instance)
            wait_ready(instance, process)
        app = create_app(
            {
                "TORCHSERVE_INFERENCE_URL": instance.url("inference"),
                "TORCHSERVE_MANAGEMENT_URL": instance.url("management"),
                "KEY_FILE": str(instance.key_file),
            }
        )
    server = make_server(app, args.host, args.port, args.threads)
    # Ctrl-C and SIGTERM both end the serve loop below, even when the shell that started us
    # ignored SIGINT (background jobs inherit SIG_IGN).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    print(
        f"\n  page:       http://{args.host}:{args.port}/\n"
        f"  API:        POST http://{args.host}:{args.port}/api/segment  (multipart 'file')\n"
        f"  health:     GET  http://{args.host}:{args.port}/api/health\n"
        f"  TorchServe: {app.config['TORCHSERVE_INFERENCE_URL']}/predictions/"
        f"{app.config['MODEL_NAME']} (keys: {app.config['KEY_FILE']})\n"
        f"  Ctrl-C stops {'the page' if args.external else 'everything'}.\n",
        flush=True,
    )
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        if process is not None:
            print("stopping TorchServe ...", flush=True)
            stop(instance, process)
    return 0
