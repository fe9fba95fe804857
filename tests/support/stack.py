"""The web app in front of a TorchServe, as the tests run them: real servers on free ports."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from frontend_server import create_app
from frontend_server.wsgi import make_server
from petseg.fleet import cluster as fleet
from petseg.serving import state
from petseg.serving.demo import web_settings
from petseg.serving.launcher import Instance, free_ports
from tests.support import traffic


def name_ports(instance: Instance) -> None:
    """Tell the request counter which ports are this TorchServe's APIs."""
    for api in ("inference", "management", "metrics"):
        traffic.name_port(getattr(instance.ports, api), f"TorchServe {api}")


@dataclass(frozen=True)
class Web:
    """A running web app: its public base URL, its operators' listener (/metrics, /status)."""

    url: str
    operator_url: str


@contextlib.contextmanager
def running_web(instance: Instance, threads: int = 16, **config: Any) -> Iterator[Web]:
    """The web app, served by its production server in a thread, in front of ``instance``,
    with its operators' listener on a free loopback port."""
    app = create_app({**web_settings(instance), "METRICS_ADDRESS": "127.0.0.1:0", **config})
    web = make_server(app, "127.0.0.1", 0, threads)
    port = int(web.effective_port)  # waitress reports it as a str
    traffic.name_port(port, "proxy")
    traffic.name_port(int(web.operator.effective_port), "proxy operators")
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    try:
        yield Web(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{web.operator.effective_port}")
    finally:
        web.close()
        thread.join(timeout=10)


@contextlib.contextmanager
def running_proxy(instance: Instance, threads: int = 16, **config: Any) -> Iterator[str]:
    """``running_web``'s public base URL."""
    with running_web(instance, threads, **config) as web:
        yield web.url


def scraped(operator_url: str, name: str, **labels: str) -> float:
    """One sample of a running proxy's /metrics, as Prometheus would read it (0 if absent)."""
    text = requests.get(f"{operator_url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


WORKERS_PER_INSTANCE = 1
"""Each test fleet instance's workers of its version, unless a test needs more. The suite's
machine has 2 cores: two instances of one worker each give each worker a core, where
TorchServe's default of two each would oversubscribe them, and every instance start (heal,
roll) would start a second worker (4-6 CPU-s: its imports, the model, the warm-up)."""


@contextlib.contextmanager
def running_cluster(
    store: Path, root: Path, instances: int = 2, workers: int = WORKERS_PER_INSTANCE
) -> Iterator[fleet.Cluster]:
    """``instances`` instances behind nginx serving ``store``'s petseg.mar alone, ``workers``
    workers of it, stopped after."""
    state_file = root / "serving.json"
    state.save(state.for_archive(store, "petseg.mar", workers), state_file)
    running = fleet.start_cluster(instances, store, state_file, root=root, port=free_ports(1)[0])
    try:
        yield running
    finally:
        fleet.stop_cluster(running)
