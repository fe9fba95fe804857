"""The web app in front of a TorchServe, as the tests run them: real servers on free ports."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from frontend_server import create_app
from frontend_server.wsgi import make_server
from petseg.launcher import Instance
from tests.support import traffic


def name_ports(instance: Instance) -> None:
    """Tell the request counter which ports are this TorchServe's APIs."""
    for api in ("inference", "management", "metrics"):
        traffic.name_port(getattr(instance.ports, api), f"TorchServe {api}")


def app_config(instance: Instance) -> dict[str, Any]:
    """The web app's settings for a TorchServe launched by the tests."""
    return {
        "TORCHSERVE_INFERENCE_URL": instance.url("inference"),
        "TORCHSERVE_MANAGEMENT_URL": instance.url("management"),
        "KEY_FILE": str(instance.key_file),
    }


@contextlib.contextmanager
def running_proxy(instance: Instance, threads: int = 16, **config: Any) -> Iterator[str]:
    """The web app, served by its production server in a thread, in front of ``instance``."""
    app = create_app({**app_config(instance), **config})
    web = make_server(app, "127.0.0.1", 0, threads)
    port = int(web.effective_port)  # waitress reports it as a str
    traffic.name_port(port, "proxy")
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        web.close()
        thread.join(timeout=10)
