"""Run TorchServe with petseg's configuration: start, wait until the model is ready, stop.

    python -m handler.server start   # daemon; state, logs and key_file.json under logs/torchserve
    python -m handler.server stop

Each instance lives in its own working directory: TorchServe writes key_file.json into the
directory it starts from and keeps its pid file in TMPDIR, so a test instance on free ports never
touches a running `make serve`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG_TEMPLATE = ROOT / "config" / "config.properties"
METRICS_CONFIG = ROOT / "config" / "metrics.yaml"
DEFAULT_WORKDIR = ROOT / "logs" / "torchserve"
DEFAULT_STORE = ROOT / "model_store"
MODEL_NAME = "petseg"


@dataclass(frozen=True)
class Ports:
    inference: int = 8080
    management: int = 8081
    metrics: int = 8082
    grpc_inference: int = 7070
    grpc_management: int = 7071
    workers: int = 9000
    """First worker number: workers talk over unix sockets named after it."""

    @classmethod
    def free(cls) -> Ports:
        """Ports nothing listens on now: for an instance beside another (tests, benchmarks)."""
        return cls(*free_ports(len(fields(cls))))


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (each socket stays bound until all are picked)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass(frozen=True)
class Instance:
    """Where one TorchServe lives and how to reach it."""

    workdir: Path = DEFAULT_WORKDIR
    model_store: Path = DEFAULT_STORE
    ports: Ports = Ports()
    overrides: dict[str, str] = field(default_factory=dict)
    """config.properties settings replaced for this instance only (a test's tiny job queue)."""

    @property
    def key_file(self) -> Path:
        return self.workdir / "key_file.json"

    def url(self, api: str, path: str = "") -> str:
        return f"http://127.0.0.1:{getattr(self.ports, api)}{path}"

    def keys(self) -> dict[str, str]:
        """The current keys: {'inference', 'management', 'API'} (TorchServe rewrites the file)."""
        data = json.loads(self.key_file.read_text())
        return {name: entry["key"] for name, entry in data.items()}

    def env(self) -> dict[str, str]:
        tmp = self.workdir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return {
            **os.environ,
            "TMPDIR": str(tmp),
            "LOG_LOCATION": str(self.workdir / "logs"),
            "METRICS_LOCATION": str(self.workdir / "logs"),
        }


def render_config(instance: Instance, load_models: str = f"{MODEL_NAME}.mar") -> Path:
    """config/config.properties with this instance's ports and absolute paths filled in."""
    store = instance.model_store.resolve()
    text = CONFIG_TEMPLATE.read_text()
    ports = instance.ports
    for api in ("inference", "management", "metrics"):
        text = text.replace(
            f"127.0.0.1:{getattr(Ports(), api)}", f"127.0.0.1:{getattr(ports, api)}"
        )
    settings = {
        "grpc_inference_port": ports.grpc_inference,
        "grpc_management_port": ports.grpc_management,
        "initial_worker_port": ports.workers,
        **instance.overrides,
    }
    for key, value in settings.items():
        text, found = re.subn(rf"(?m)^{re.escape(key)}=.*$", f"{key}={value}", text)
        if not found:
            text += f"\n{key}={value}\n"
    allowed = "file://" + re.escape(str(store)) + r"/[A-Za-z0-9_.-]+\.mar"
    text = (
        text.replace("@MODEL_STORE@", str(store))
        .replace("@ALLOWED_URLS@", allowed)
        .replace("@METRICS_CONFIG@", str(METRICS_CONFIG))
    )
    text = re.sub(r"(?m)^load_models=.*$", f"load_models={load_models}", text)
    instance.workdir.mkdir(parents=True, exist_ok=True)
    path = instance.workdir / "config.properties"
    path.write_text(text)
    return path


def torchserve_command() -> str:
    found = shutil.which("torchserve", path=str(Path(sys.executable).parent)) or shutil.which(
        "torchserve"
    )
    if not found:
        raise RuntimeError("torchserve is not installed: run `make setup`")
    return found


def start(instance: Instance, load_models: str = f"{MODEL_NAME}.mar") -> subprocess.Popen:
    """Start TorchServe in the foreground of a new process session (stop with :func:`stop`)."""
    config = render_config(instance, load_models)
    instance.key_file.unlink(missing_ok=True)
    with (instance.workdir / "torchserve.out").open("ab") as log:
        return subprocess.Popen(
            [
                torchserve_command(),
                "--start",
                "--foreground",
                "--ncs",
                "--ts-config",
                str(config),
                "--model-store",
                str(instance.model_store.resolve()),
            ],
            cwd=instance.workdir,
            env=instance.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def request(
    url: str,
    key: str | None = None,
    method: str = "GET",
    timeout: float = 10,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """(status, body) of one HTTP call; HTTP errors are answers, not exceptions."""
    headers = {**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def workers(instance: Instance, model: str = MODEL_NAME) -> list[dict]:
    """The workers of every version of ``model`` as the management API describes them (pid,
    status, memory...); none while TorchServe is down or the model is not registered."""
    try:
        status, body = request(
            instance.url("management", f"/models/{model}"), instance.keys()["management"]
        )
    except (OSError, KeyError, ValueError):
        return []
    if status != 200:
        return []
    return [w for entry in json.loads(body) for w in entry["workers"]]


def ready_workers(instance: Instance, model: str = MODEL_NAME) -> int:
    """Workers of ``model`` in state READY (0 while loading or when TorchServe is down)."""
    return sum(w["status"] == "READY" for w in workers(instance, model))


def wait_ready(
    instance: Instance,
    process: subprocess.Popen | None = None,
    timeout: float = 180,
    model: str = MODEL_NAME,
) -> None:
    """Block until ``model`` has a READY worker; fail early if TorchServe exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"TorchServe exited with {process.returncode}; see {instance.workdir}"
            )
        if ready_workers(instance, model):
            return
        time.sleep(0.5)
    raise TimeoutError(f"{model} not ready after {timeout:.0f} s; logs in {instance.workdir}/logs")


def stop(instance: Instance, process: subprocess.Popen | None = None, timeout: float = 60) -> None:
    """Stop TorchServe and its workers, and wait until they are gone."""
    subprocess.run(
        [torchserve_command(), "--stop", "--foreground"],
        cwd=instance.workdir,
        env=instance.env(),
        capture_output=True,
        timeout=timeout,
    )
    if process is not None:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start or stop TorchServe serving petseg.")
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--model-store", type=Path, default=DEFAULT_STORE)
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for ready")
    args = parser.parse_args(argv)
    instance = Instance(args.workdir, args.model_store)
    if args.action == "stop":
        stop(instance)
        print("TorchServe stopped")
        return 0
    if args.action == "status":
        workers = ready_workers(instance)
        print(f"{MODEL_NAME}: {workers} ready workers" if workers else "not serving")
        return 0 if workers else 1
    if ready_workers(instance):
        print("TorchServe is already serving petseg")
    else:
        process = start(instance)
        try:
            wait_ready(instance, process, args.timeout)
        except (RuntimeError, TimeoutError) as exc:
            stop(instance, process)
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(f"inference:  {instance.url('inference', f'/predictions/{MODEL_NAME}')}")
    print(f"management: {instance.url('management', '/models')}")
    print(f"metrics:    {instance.url('metrics', '/metrics')}")
    print(f"keys:       {instance.key_file}")
    print(f"logs:       {instance.workdir / 'logs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
