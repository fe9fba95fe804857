"""A real Label Studio on loopback, and its HTTP API as its users' scripts call it: for the
pre-labelling row of `make bench` (bench/prelabel.py) and the labelling tests
(tests/system/test_label_studio.py), which both need the same one.

It is installed once into a virtual environment of its own under the user's cache folder (its
pins differ from ours; ~1 min the first time, from bench/label-studio-requirements.txt, a freeze
of a working install), then started with its database and media in a folder of the caller's.
Its user logs in and makes a personal access token, Label Studio's default kind of API token;
`petseg label-studio serve` runs beside it as the projects' ML backend.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from filelock import FileLock

from petseg.cli.labelling import PASSWORD_VARIABLE, TOKEN_VARIABLE
from petseg.serving.launcher import ROOT, free_ports

REQUIREMENTS = Path(__file__).with_name("label-studio-requirements.txt")
VERSION = "1.23.2"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "petseg-tests"
HOME = CACHE / f"label-studio-{VERSION}"
COMPLETE = HOME / ".petseg-installed"
"""Written last, a copy of the requirements: a folder without it (an install cut off, or of
other pins) is installed over."""
EMAIL, PASSWORD = "annotator@petseg.test", "petseg-annotator-1"
BACKEND_USER, BACKEND_PASSWORD = "label-studio", "the-backend-s-own-password"
START_S = 180.0


class StudioError(RuntimeError):
    """Label Studio did not start, or answered a call otherwise than its API says."""


def installed() -> Path:
    """The label-studio command, installed first where it is missing: by one caller at a time
    (the tests start the install in the background as their run begins; the test that needs
    it waits for that install instead of starting a second one beside it)."""
    command = HOME / "bin" / "label-studio"
    HOME.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(HOME.parent / f"label-studio-{VERSION}.lock"):
        if COMPLETE.is_file() and COMPLETE.read_text() == REQUIREMENTS.read_text():
            return command
        if not (HOME / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(HOME)], check=True)
        pip = [str(HOME / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-input"]
        print(f"installing Label Studio {VERSION} into {HOME} (once)", file=sys.stderr, flush=True)
        subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True, timeout=900)
        COMPLETE.write_text(REQUIREMENTS.read_text())
    return command


@dataclass
class Studio:
    """A running Label Studio: its URL, data folder and a logged-in session of its user."""

    url: str
    data: Path
    session: requests.Session

    def api(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        """``path`` under its API, as its user; the JSON answer (or the bytes of a file)."""
        token = self.session.cookies.get("csrftoken", "")
        headers = {"X-CSRFToken": token, "Referer": self.url, **kwargs.pop("headers", {})}
        answer = self.session.request(
            method, self.url + path, headers=headers, timeout=600, **kwargs
        )
        if answer.status_code != expect:
            raise StudioError(f"{method} {path}: HTTP {answer.status_code}: {answer.text[:500]}")
        if answer.headers.get("Content-Type", "").startswith("application/json"):
            return answer.json()
        return answer.content

    def personal_access_token(self) -> str:
        return self.api("POST", "/api/token/", expect=201)["token"]

    def project(self, title: str, label_config: str) -> int:
        body = {"title": title, "label_config": label_config}
        return self.api("POST", "/api/projects", expect=201, json=body)["id"]

    def import_photos(self, project: int, photos: list[Path]) -> dict[int, str]:
        """The photos uploaded as its importer does: task id -> photo name."""
        files = {f"file{i}": (p.name, p.read_bytes()) for i, p in enumerate(photos)}  # one a field
        self.api("POST", f"/api/projects/{project}/import", expect=201, files=files)
        # its uploads keep the name after a prefix of their own: /data/upload/1/3fa2b1c0-cat.jpg
        return {
            task["id"]: task["data"]["image"].rsplit("-", 1)[-1] for task in self.tasks(project)
        }

    def tasks(self, project: int) -> list[dict[str, Any]]:
        return self.api("GET", f"/api/tasks/?project={project}&page_size=10000")["tasks"]

    def connect(self, project: int, backend: str) -> None:
        """``backend`` as the project's ML backend, as its users add one: by URL, with its
        basic-auth password (Label Studio checks /health and sends /setup)."""
        body = {"project": project, "url": backend, "title": "petseg", "is_interactive": False}
        body |= {"auth_method": "BASIC_AUTH", "basic_auth_user": BACKEND_USER}
        self.api("POST", "/api/ml", expect=201, json=body | {"basic_auth_pass": BACKEND_PASSWORD})

    def retrieve_predictions(self, project: int) -> None:
        """The Data Manager's "Retrieve Predictions" over every task (done when it answers)."""
        every = {"selectedItems": {"all": True, "excluded": []}}
        action = f"/api/dm/actions?id=retrieve_tasks_predictions&project={project}"
        self.api("POST", action, json=every)

    def predictions(self, task: int) -> list[dict[str, Any]]:
        return self.api("GET", f"/api/predictions/?task={task}")

    def media(self, project: int) -> Path:
        """Where the photos imported into ``project`` lie (what an export's URLs name)."""
        return self.data / "media" / "upload" / str(project)


@contextlib.contextmanager
def running(data: Path, log: Path) -> Iterator[Studio]:
    """Label Studio on a free loopback port, its user logged in; stopped at the end."""
    command = installed()
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRT"))
    }
    environment.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data),
        LABEL_STUDIO_USERNAME=EMAIL,
        LABEL_STUDIO_PASSWORD=PASSWORD,
        LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true",
        # The ML backend and the photos are on loopback: Label Studio refuses both by default.
        ML_BLOCK_LOCAL_IP="false",
        SSRF_PROTECTION_ENABLED="false",
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
        COLLECT_ANALYTICS="false",
    )
    argv = [str(command), "start", "--no-browser", "--internal-host", "127.0.0.1"]
    argv += ["--port", str(port), "--host", url]
    data.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=environment, cwd=data
        )
    try:
        _wait(f"{url}/health", process, START_S, f"Label Studio (its log: {log})")
        yield Studio(url, data, _logged_in(url))
    finally:
        _stop(process)


def _logged_in(url: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{url}/user/login/", timeout=30)
    form = {"email": EMAIL, "password": PASSWORD}
    form["csrfmiddlewaretoken"] = session.cookies["csrftoken"]
    reply = session.post(
        f"{url}/user/login/", data=form, headers={"Referer": url}, allow_redirects=False
    )
    if reply.status_code != 302:
        raise StudioError(f"Label Studio's login answered {reply.status_code}: {reply.text[:300]}")
    return session


@contextlib.contextmanager
def backend(workdir: Path, studio: Studio, log: Path) -> Iterator[str]:
    """`petseg label-studio serve` for ``workdir``'s TorchServe and ``studio``, with a
    personal access token; its URL, once it answers."""
    (port,) = free_ports(1)
    secrets = {TOKEN_VARIABLE: studio.personal_access_token(), PASSWORD_VARIABLE: BACKEND_PASSWORD}
    argv = [sys.executable, "-m", "petseg", "--workdir", str(workdir), "label-studio", "serve"]
    argv += ["--label-studio-url", studio.url, "--port", str(port), "--user", BACKEND_USER]
    with log.open("w") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **secrets}
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(f"{url}/health", process, 60, f"the ML backend (its log: {log})")
        yield url
    finally:
        _stop(process)


def _wait(url: str, process: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StudioError(f"{what} exited ({process.returncode}) while starting")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise StudioError(f"{what} did not answer {url} within {timeout:.0f} s")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
