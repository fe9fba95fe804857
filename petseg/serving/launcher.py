"""Run TorchServe with petseg's configuration: render it, start, wait until ready, stop.

Each instance lives in its own working directory: TorchServe writes key_file.json into the
directory it starts from and keeps its pid file in TMPDIR, so a test instance on free ports never
touches a running `petseg serve`.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree import ElementTree

import psutil

from handler.protocol import KEY_FILE_NAME, MODEL_NAME, Ports
from petseg import ROOT
from petseg.serving.reconcile import apply_state, live_versions
from petseg.serving.state import for_archive, locked, save
from torchserve_client import KeyFile, ServingReport, TorchServe

CONFIG_TEMPLATE = ROOT / "config" / "config.properties"
PID_FILE = ".model_server.pid"
"""TorchServe's pid file, in its TMPDIR (the instance's own)."""
METRICS_CONFIG = ROOT / "config" / "metrics.yaml"
LOG_CONFIG = ROOT / "config" / "log4j2.xml"
STDOUT_LAYOUT = "%d{ISO8601} [%-5p] %t %c - %m%n"
DEFAULT_WORKDIR = ROOT / "logs" / "torchserve"
DEFAULT_STORE = ROOT / "model_store"
DEFAULT_ARCHIVE = f"{MODEL_NAME}.mar"
LOOPBACK = "127.0.0.1"


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (each socket stays bound until all are picked)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def read_properties(path: Path) -> dict[str, str]:
    """The settings of a config.properties file (comments skipped)."""
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def default_workers() -> int:
    """TorchServe's ``default_workers_per_model`` (config/config.properties): the workers of a
    version whose state names none, as a test's or the bench's instance serves it."""
    return int(read_properties(CONFIG_TEMPLATE)["default_workers_per_model"])


def unused_ports() -> Ports:
    """Ports nothing listens on now: for an instance beside another (tests, benchmarks)."""
    return Ports(*free_ports(len(fields(Ports))))


@dataclass(frozen=True)
class Instance:
    """Where one TorchServe lives and how to reach it."""

    workdir: Path = DEFAULT_WORKDIR
    model_store: Path = DEFAULT_STORE
    ports: Ports = field(default_factory=Ports)
    overrides: dict[str, str] = field(default_factory=dict)
    """config.properties settings replaced for this instance only (a test's tiny job queue)."""
    scratch: Path | None = None
    """Where TorchServe unpacks archives and writes logs: the workdir unless named (a
    container's /tmp, where its workdir is a small in-memory volume for the keys)."""

    @property
    def key_file(self) -> Path:
        return self.workdir / KEY_FILE_NAME

    @property
    def config_file(self) -> Path:
        return self.workdir / "config.properties"

    @property
    def scratch_dir(self) -> Path:
        return self.scratch or self.workdir

    @property
    def tmp_dir(self) -> Path:
        return self.scratch_dir / "tmp"

    def url(self, api: str, path: str = "") -> str:
        return f"http://{LOOPBACK}:{getattr(self.ports, api)}{path}"

    def keys(self) -> dict[str, str]:
        """The keys TorchServe holds now: {'inference', 'management', 'API'}."""
        return KeyFile(self.key_file).keys()

    def client(self, timeout: float = 60.0) -> TorchServe:
        return TorchServe(
            self.url("inference"), self.url("management"), self.key_file, timeout=timeout
        )

    def env(self) -> dict[str, str]:
        """TorchServe's environment: its own TMPDIR and logs (in ``scratch``), and no
        PYTHONPATH, so workers import only what the archive carries and what is installed."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
        return {
            **env,
            "TMPDIR": str(self.tmp_dir),
            "LOG_LOCATION": str(self.scratch_dir / "logs"),
            "METRICS_LOCATION": str(self.scratch_dir / "logs"),
        }


def running_instance(
    workdir: Path = DEFAULT_WORKDIR, model_store: Path = DEFAULT_STORE
) -> Instance:
    """The instance started from ``workdir``, with the ports and the model store its rendered
    config holds (an instance on other ports, e.g. a test's, is found by its folder alone)."""
    bare = Instance(Path(workdir), Path(model_store))
    if not bare.config_file.is_file():
        return bare
    settings = read_properties(bare.config_file)
    model_store = Path(settings.get("model_store", model_store))
    ports = Ports(
        inference=_port(settings["inference_address"]),
        management=_port(settings["management_address"]),
        metrics=_port(settings["metrics_address"]),
        grpc_inference=int(settings["grpc_inference_port"]),
        grpc_management=int(settings["grpc_management_port"]),
        workers=int(settings["initial_worker_port"]),
    )
    return Instance(Path(workdir), Path(model_store), ports)


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def render_config(instance: Instance, host: str = LOOPBACK) -> Path:
    """config/config.properties with this instance's ports, paths and overrides filled in, in
    its workdir; inference and metrics listen on ``host`` (management always on loopback).
    TorchServe loads no model by itself: the serving state says what to register."""
    store = instance.model_store.resolve()
    values = {f"{name.upper()}_PORT": port for name, port in vars(instance.ports).items()}
    values.update(
        HOST=host,
        MODEL_STORE=store,
        ALLOWED_URLS="file://" + re.escape(str(store)) + r"/[A-Za-z0-9_.-]+\.mar",
        METRICS_CONFIG=METRICS_CONFIG,
    )
    text = fill(CONFIG_TEMPLATE, values)
    for key, value in instance.overrides.items():
        text, found = re.subn(rf"(?m)^{re.escape(key)}=.*$", f"{key}={value}", text)
        if not found:
            text += f"\n{key}={value}\n"
    instance.workdir.mkdir(parents=True, exist_ok=True)
    instance.config_file.write_text(text)
    return instance.config_file


def fill(template: Path, values: dict[str, object]) -> str:
    """``template``'s text with each @NAME@ replaced by ``values[NAME]``: the one way the tools
    render a config file of another program (TorchServe's, nginx's)."""

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"{template} has @{name}@, which nothing fills in")
        return str(values[name])

    return re.sub(r"@([A-Z_]+)@", value, template.read_text())


def render_log_config(workdir: Path) -> Path:
    """config/log4j2.xml with every logger writing to stdout instead of its file, in
    ``workdir``: a container's logs are its output (`podman logs`, `kubectl logs`)."""
    tree = ElementTree.parse(LOG_CONFIG)
    appenders = tree.getroot().find("Appenders")
    appenders.clear()
    console = ElementTree.SubElement(appenders, "Console", name="STDOUT", target="SYSTEM_OUT")
    ElementTree.SubElement(console, "PatternLayout", pattern=STDOUT_LAYOUT)
    for reference in tree.iter("AppenderRef"):
        reference.set("ref", "STDOUT")
    path = Path(workdir) / LOG_CONFIG.name
    tree.write(path, encoding="UTF-8", xml_declaration=True)
    return path


def torchserve_command() -> str:
    found = shutil.which("torchserve", path=str(Path(sys.executable).parent)) or shutil.which(
        "torchserve"
    )
    if not found:
        raise RuntimeError("torchserve is not installed: run `make setup`")
    return found


def start(
    instance: Instance,
    host: str = LOOPBACK,
    log_config: Path = LOG_CONFIG,
    own_session: bool = True,
) -> subprocess.Popen:
    """Start TorchServe, with no model yet (:func:`bring_up` applies the serving state), in
    the foreground of a new process session (stop with :func:`stop`); ``own_session=False``
    keeps it in ours, where a container's init signals the whole group, and lets it write to
    our output."""
    config = render_config(instance, host)
    forget_stale_pid_file(instance)
    instance.key_file.unlink(missing_ok=True)
    ServingReport.remove(instance.workdir)
    command = [
        torchserve_command(),
        "--start",
        "--foreground",
        "--ncs",
        "--ts-config",
        str(config),
        "--log-config",
        str(log_config),
        "--model-store",
        str(instance.model_store.resolve()),
    ]
    if not own_session:
        return subprocess.Popen(command, cwd=instance.workdir, env=instance.env())
    with (instance.workdir / "torchserve.out").open("ab") as log:
        return subprocess.Popen(
            command,
            cwd=instance.workdir,
            env=instance.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def bring_up(
    instance: Instance,
    process: subprocess.Popen | None,
    state_file: Path,
    durable: bool = True,
    timeout: float = 180,
    every_worker: bool = False,
) -> ServingReport:
    """Once TorchServe answers, apply the serving state to it (its report makes the instance
    ready), then wait until the default version has a READY worker (``every_worker``: all of
    them); fail early if TorchServe exits."""
    client = instance.client()
    wait_until(
        lambda: client.health().reachable,
        process,
        timeout,
        f"TorchServe (see {instance.workdir})",
        f"TorchServe did not answer; logs in {instance.workdir}/logs",
        interval=0.5,
    )
    # with the state's lock where operators may change it: no change lands between the reading
    # and the instance's registrations
    with locked(state_file) if durable else contextlib.nullcontext():
        report = apply_state(client, state_file, instance.model_store, instance.workdir, durable)
    if not live_versions(client):
        raise NothingServed("; ".join(report.problems) or f"{state_file} declares no version")
    wait_ready(instance, process, timeout, every_worker)
    return report


def serve_archive(
    instance: Instance,
    archive: str = DEFAULT_ARCHIVE,
    timeout: float = 180,
    every_worker: bool = False,
) -> subprocess.Popen:
    """TorchServe serving one archive of the store as the archive asks (a test's or the
    bench's instance, never the user's state): its state file goes into the workdir."""
    instance.workdir.mkdir(parents=True, exist_ok=True)
    state_file = instance.workdir / "serving.json"
    save(for_archive(instance.model_store, archive), state_file)
    process = start(instance)
    try:
        bring_up(instance, process, state_file, timeout=timeout, every_worker=every_worker)
    except BaseException:
        stop(instance, process)
        raise
    return process


class NothingServed(RuntimeError):
    """No version of the serving state could be registered: the report names why."""

    def __init__(self, problems: str) -> None:
        super().__init__(f"nothing of the serving state could be served: {problems}")


def wait_ready(
    instance: Instance,
    process: subprocess.Popen | None = None,
    timeout: float = 180,
    every_worker: bool = False,
) -> None:
    """Block until the model has a READY worker (``every_worker``: all of them, as a
    measurement needs: a worker still starting takes CPU); fail early if TorchServe exits."""
    client = instance.client()

    def ready() -> bool:
        health = client.health()
        return bool(health.ready_workers) and (
            not every_worker or health.ready_workers == health.workers
        )

    wait_until(
        ready,
        process,
        timeout,
        f"TorchServe (see {instance.workdir})",
        f"{MODEL_NAME} not ready; logs in {instance.workdir}/logs",
        interval=0.5,
    )


def wait_until(
    ready: Callable[[], bool],
    process: subprocess.Popen | None,
    timeout: float,
    name: str,
    not_ready: str,
    interval: float = 0.2,
) -> None:
    """Poll ``ready()`` until it is true; fail at once if ``process`` (called ``name``) exits,
    with ``not_ready`` after ``timeout`` seconds: every start-up wait of the tools."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        if ready():
            return
        time.sleep(interval)
    raise TimeoutError(f"{not_ready} after {timeout:.0f} s")


def wait_answering(
    url: str, process: subprocess.Popen, name: str, timeout: float, status: int | None = None
) -> None:
    """Until a GET of ``url`` is answered (with ``status``, when one is named): the start-up
    wait of a server other than TorchServe (the web proxy, nginx, the bench's naive server);
    ``name`` says which, should its ``process`` exit."""

    def answered() -> bool:
        got = http_status(url)
        return got is not None and status in (None, got)

    expected = f"HTTP {status}" if status else "an answer"
    wait_until(answered, process, timeout, name, f"no {expected} from {url}")


def http_status(url: str, timeout: float = 5) -> int | None:
    """The status a GET of ``url`` is answered with; None when nothing answers."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=timeout)
    try:
        connection.request("GET", parts.path or "/")
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def forget_stale_pid_file(instance: Instance) -> None:
    """Remove the instance's TorchServe pid file unless its pid runs this instance's TorchServe.

    `torchserve --stop` ends (and `--start` refuses to start beside) any process whose command
    line names TorchServe's main class. When this instance's TorchServe died without cleaning up
    (SIGKILL, a lost machine), its pid may since have gone to another instance's TorchServe:
    pids wrap at 32768 on many machines, and each JVM thread takes one."""
    pid_file = instance.tmp_dir / PID_FILE
    try:
        cmdline = psutil.Process(int(pid_file.read_text().split()[0])).cmdline()
    except (OSError, ValueError, IndexError, psutil.Error):
        cmdline = []
    if str(instance.config_file) not in cmdline:
        pid_file.unlink(missing_ok=True)


def stop(instance: Instance, process: subprocess.Popen | None = None, timeout: float = 60) -> None:
    """Stop TorchServe and its workers, and wait until they are gone."""
    forget_stale_pid_file(instance)
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
