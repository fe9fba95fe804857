"""A real Label Studio for the labelling tests, and its HTTP API as its users call it.

It is installed once into a virtual environment of its own under the user's cache folder (its
pins differ from ours; ~1 min the first time, from tests/support/label-studio-requirements.txt,
a freeze of a working install), then started on loopback per test module with its database and
media in the test's folder. The tests log in as its user, make a personal access token (Label
Studio's default kind of API token) and drive it as a script of its users would.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from petseg.serving.launcher import free_ports
from tests.support.waiting import wait_for

REQUIREMENTS = Path(__file__).with_name("label-studio-requirements.txt")
VERSION = "1.23.2"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "petseg-tests"
HOME = CACHE / f"label-studio-{VERSION}"
COMPLETE = HOME / ".petseg-installed"
"""Written last: a folder without it is an install that was cut off, and is installed over."""
EMAIL, PASSWORD = "annotator@petseg.test", "petseg-annotator-1"
START_S = 180


def installed() -> Path:
    """The label-studio command, installed first where it is missing."""
    command = HOME / "bin" / "label-studio"
    if COMPLETE.is_file() and COMPLETE.read_text() == REQUIREMENTS.read_text():
        return command
    HOME.parent.mkdir(parents=True, exist_ok=True)
    if not (HOME / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(HOME)], check=True)
    pip = [str(HOME / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-input"]
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
        """``path`` under its API, as its user; the JSON answer (or bytes when not JSON)."""
        token = self.session.cookies.get("csrftoken", "")
        headers = {"X-CSRFToken": token, "Referer": self.url, **kwargs.pop("headers", {})}
        answer = self.session.request(
            method, self.url + path, headers=headers, timeout=300, **kwargs
        )
        assert answer.status_code == expect, (method, path, answer.status_code, answer.text[:500])
        if answer.headers.get("Content-Type", "").startswith("application/json"):
            return answer.json()
        return answer.content

    def personal_access_token(self) -> str:
        return self.api("POST", "/api/token/", expect=201)["token"]

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
    with log.open("w") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=environment, cwd=data.parent
        )
    try:
        wait_for(lambda: _answers(f"{url}/health", process), START_S, "Label Studio's start")
        session = requests.Session()
        session.get(f"{url}/user/login/", timeout=30)
        form = {
            "email": EMAIL,
            "password": PASSWORD,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        }
        reply = session.post(
            f"{url}/user/login/", data=form, headers={"Referer": url}, allow_redirects=False
        )
        assert reply.status_code == 302, reply.text[:500]
        yield Studio(url, data, session)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(url: str, process: subprocess.Popen) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"Label Studio exited ({process.returncode}) while starting")
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False
