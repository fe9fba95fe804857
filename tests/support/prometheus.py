"""A real Prometheus for the tests (Debian's package, `make prometheus`): the shipped config
pointed at the test's servers, started on a free port, asked through its HTTP API."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from petseg.serving.launcher import ROOT, free_ports

CONFIG_DIR = ROOT / "config" / "prometheus"
SCRAPE_INTERVAL = "1s"
"""The shipped 15 s would make the tests wait; the first sample still takes ~5 s to appear."""


def tool(name: str) -> str:
    """The path of ``prometheus`` or ``promtool``; a failure that says how to get them."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"Debian's prometheus package ({name}) is missing: run `make prometheus`")
    return path


def promtool(*args: str) -> subprocess.CompletedProcess:
    """promtool run in config/prometheus, where the rule files name each other."""
    return subprocess.run(
        [tool("promtool"), *args], cwd=CONFIG_DIR, capture_output=True, text=True, timeout=120
    )


def render_config(targets: dict[str, str]) -> dict[str, Any]:
    """config/prometheus/prometheus.yml with each job scraping ``targets[job]`` (host:port)
    every ``SCRAPE_INTERVAL`` and the rule files named by absolute path."""
    config = yaml.safe_load((CONFIG_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL}
    config["rule_files"] = [str(CONFIG_DIR / name) for name in config["rule_files"]]
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return config


class Prometheus:
    """A running Prometheus, through its HTTP API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, path: str, **params: str) -> Any:
        """The ``data`` of an API answer; an AssertionError with Prometheus's own error."""
        answer = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=30).json()
        assert answer["status"] == "success", (params, answer)
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's series: [{"metric": labels, "value": [time, "text"]}]."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return data["result"]

    def value(self, expr: str) -> float | None:
        """The single value of ``expr`` (None when it has no series)."""
        result = self.query(expr)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else None

    def wait_for(
        self, expr: str, done: Callable[[float | None], bool], timeout: float = 30
    ) -> float | None:
        """Poll ``expr`` until ``done(value)``: samples appear some seconds after scraping."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.value(expr)
            if done(value):
                return value
            assert time.monotonic() < deadline, f"{expr} is still {value} after {timeout} s"
            time.sleep(0.25)


@contextlib.contextmanager
def running_prometheus(workdir: Path, targets: dict[str, str]) -> Iterator[Prometheus]:
    """Prometheus scraping ``targets`` (job -> host:port) on a free loopback port."""
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(render_config(targets)))
    port = free_ports(1)[0]
    with (workdir / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not ready(url):
            assert process.poll() is None, (workdir / "prometheus.log").read_text()
            assert time.monotonic() < deadline, "Prometheus not ready after 30 s"
            time.sleep(0.1)
        yield Prometheus(url)
    finally:
        process.terminate()
        process.wait(timeout=30)


def ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/-/ready", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False
