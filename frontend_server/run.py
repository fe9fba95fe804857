"""`make run`: TorchServe with petseg plus this web app, until Ctrl-C stops both.

    python -m frontend_server.run [--host 127.0.0.1 --port 5000]

Reuses a TorchServe that already serves petseg (make serve) and leaves it running; otherwise
starts one and stops it, workers included, on Ctrl-C or SIGTERM. With --external it only serves
the page, in front of the TorchServe that the PETSEG_* variables name (another host, a bench).
"""

from __future__ import annotations

import argparse
import signal
import sys

from frontend_server import create_app
from frontend_server.serving import make_server
from handler.server import Instance, ready_workers, start, stop, wait_ready


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=16, help="waitress worker threads")
    parser.add_argument(
        "--external",
        action="store_true",
        help="front a TorchServe that runs elsewhere, as the PETSEG_* variables say; start none",
    )
    args = parser.parse_args(argv)

    instance = Instance()
    process = None
    if args.external:
        app = create_app()
    else:
        if not ready_workers(instance):
            print("starting TorchServe ...", flush=True)
            process = start(instance)
            wait_ready(instance, process)
        app = create_app({"KEY_FILE": str(instance.key_file)})
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


if __name__ == "__main__":
    sys.exit(main())
