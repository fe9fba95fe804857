"""The fleet's decisions on Kubernetes, without a cluster: the decisions file merged into the
declared state (petseg.serving.decisions), a pod following it (petseg.serving.pod_decisions), and
the decider's Kubernetes parts (petseg.rollout.kube_decider, petseg.rollout.kube_api) against real
local servers: an HTTPS listener with its own CA standing in for the API server, HTTP listeners
standing in for the proxies, and `localhost` standing in for the headless Service's DNS name. What
a real API server and kubelet do is not run here (docs/containers-and-kubernetes.md)."""

from __future__ import annotations

import contextlib
import json
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from petseg.rollout.decider import Decider
from petseg.rollout.kube_api import MERGE_PATCH, ApiError, ApiServer
from petseg.rollout.kube_decider import CONFIG_MAP, ConfigMapRecorder, headless_fleet
from petseg.serving import decisions, state
from petseg.serving.decisions import DECISION_KEY
from petseg.serving.launcher import Instance
from petseg.serving.pod_decisions import APPLIED_FILE, Follower
from petseg.serving.state import ServingState, VersionSpec
from tests.support.cli import started
from tests.support.proxies import half, proxy_answering, proxy_figures
from torchserve_client import ServingReport
from torchserve_client.rollout import Decision, Rollout

TRIAL = Rollout("2.0", "canary", 10, min_requests=30, started_at=1_700_000_000.0)
NEXT_TRIAL = Rollout("2.0", "canary", 10, min_requests=30, started_at=1_800_000_000.0)
VERSIONS = {"1.0": VersionSpec("petseg.mar"), "2.0": VersionSpec("petseg-v2.mar")}
DECIDED = TRIAL.decided(Decision("aborted", "the fleet's decider", "masks disagree", at=5.0))
NAMESPACE = "petseg-test"
TOKEN = "token-of-the-decider"


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """serving.json declaring TRIAL, and the decisions folder's file (absent: no decision)."""
    serving = tmp_path / "config" / "serving.json"
    serving.parent.mkdir()
    state.save(ServingState("1.0", VERSIONS, TRIAL), serving)
    (tmp_path / "decisions").mkdir()
    return serving, tmp_path / "decisions" / DECISION_KEY


# -- the merge ---------------------------------------------------------------------------------
def test_a_decision_on_the_declared_trial_aborts_it(files):
    serving, decided = files
    declared = state.load(serving)
    assert decisions.merged(declared, decided) == decisions.Merged(declared), "no file: as is"
    decided.write_text(decisions.encode(DECIDED))
    found = decisions.merged(declared, decided)
    assert found.ignored is None and found.state.rollout == DECIDED
    assert found.state.versions == declared.versions and found.state.default == "1.0"


def test_a_decision_on_another_trial_is_ignored_and_said(files):
    _, decided = files
    decided.write_text(decisions.encode(DECIDED))
    newer = ServingState("1.0", VERSIONS, NEXT_TRIAL)
    found = decisions.merged(newer, decided)
    assert found.state == newer, "an old decision ended a new trial"
    assert "not about the trial declared now: ignored" in found.ignored
    assert str(1_700_000_000.0) in found.ignored
    none = ServingState("1.0", VERSIONS)
    assert decisions.merged(none, decided).state == none


def test_the_states_own_record_of_a_decision_stands(files):
    _, decided = files
    by_hand = ServingState("1.0", VERSIONS, TRIAL.decided(Decision("aborted", "me", "by hand")))
    decided.write_text(decisions.encode(DECIDED))
    assert decisions.merged(by_hand, decided) == decisions.Merged(by_hand)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not a decided rollout"),
        (json.dumps(TRIAL.as_dict()), "holds no decision"),
        (json.dumps({**DECIDED.as_dict(), "verdict": "bad"}), "unknown key(s) ['verdict']"),
        (json.dumps({**DECIDED.as_dict(), "decision": {"outcome": "promoted"}}), "decision"),
    ],
)
def test_a_malformed_decision_is_ignored_and_said(files, text: str, message: str):
    serving, decided = files
    decided.write_text(text)
    declared = state.load(serving)
    found = decisions.merged(declared, decided)
    assert found.state == declared, "a malformed file changed the state"
    assert str(decided) in found.ignored and message in found.ignored
    assert "ignored, the declared trial goes on" in found.ignored


# -- a pod -------------------------------------------------------------------------------------
@pytest.fixture
def pod(files, tmp_path: Path) -> tuple[Path, Path, Instance]:
    """A pod's working folder whose report carries TRIAL running, as its start wrote it."""
    serving, decided = files
    member = Instance(tmp_path / "run")
    member.workdir.mkdir()
    ServingReport(str(member.workdir / APPLIED_FILE), False, rollout=TRIAL.as_dict()).write(
        member.workdir
    )
    return serving, decided, member


def reported(member: Instance) -> Rollout:
    return Rollout.from_dict(ServingReport.read(member.workdir).rollout)


def test_a_pod_applies_a_decision_that_appears_while_it_runs_and_keeps_it(pod):
    serving, decided, member = pod
    declared = serving.read_text()
    said: list[str] = []
    follower = Follower(serving, decided, member, said.append)
    applied = follower.path
    assert state.load(applied).rollout == TRIAL and not said
    follower.look()
    assert reported(member) == TRIAL, "no decision yet, yet the report changed"
    decided.write_text(decisions.encode(DECIDED))
    follower.look()
    assert reported(member) == DECIDED and state.load(applied).rollout == DECIDED
    assert said == [
        "this pod now applies the fleet's decision: the canary of 2.0 was aborted by the "
        "fleet's decider: masks disagree"
    ]
    decided.unlink()  # the ConfigMap lost its key: what this pod applied stays
    follower.look()
    assert reported(member) == DECIDED and state.load(applied).rollout == DECIDED
    assert serving.read_text() == declared, "the ConfigMap's file was written"


def test_a_restarted_pod_starts_aborted(pod):
    serving, decided, member = pod
    decided.write_text(decisions.encode(DECIDED))
    said: list[str] = []
    follower = Follower(serving, decided, member, said.append)
    assert state.load(follower.path).rollout == DECIDED
    assert said[0].startswith("this pod applies the fleet's decision: the canary of 2.0")


def test_a_pod_says_once_why_it_ignores_a_decision_and_changes_nothing(pod):
    serving, decided, member = pod
    said: list[str] = []
    follower = Follower(serving, decided, member, said.append)
    decided.write_text("{torn")
    follower.look()
    follower.look()
    assert len(said) == 1 and "not a decided rollout" in said[0]
    decided.write_text(decisions.encode(NEXT_TRIAL.decided(DECIDED.decision)))
    follower.look()
    assert len(said) == 2 and "not about the trial declared now" in said[1]
    assert reported(member) == TRIAL and state.load(follower.path).rollout == TRIAL


# -- the API server ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate for 127.0.0.1: the fake API server's, and its CA."""
    return self_signed(tmp_path_factory.mktemp("tls"))


def self_signed(folder: Path) -> Path:
    """``folder`` with key.pem and cert.pem, a certificate for 127.0.0.1 signed by itself."""
    keys = ["-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")]
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subprocess.run([*command, *keys, *subject], check=True, capture_output=True, timeout=60)
    return folder


@pytest.fixture
def account(tls: Path, tmp_path: Path) -> Path:
    """The ServiceAccount's folder as the kubelet mounts it: token, CA, namespace."""
    folder = tmp_path / "serviceaccount"
    folder.mkdir()
    (folder / "token").write_text(TOKEN)
    (folder / "ca.crt").write_text((tls / "cert.pem").read_text())
    (folder / "namespace").write_text(NAMESPACE)
    return folder


@dataclass
class FakeApiServer:
    """The one ConfigMap the decider may touch, behind HTTPS; every request kept."""

    url: str = ""
    data: dict[str, str] = field(default_factory=dict)
    version: int = 7
    refuse: int | None = None
    """Answer every request with this status (and a Status object), as a refusing server."""
    requests: list[dict] = field(default_factory=list)

    def answer(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict]:
        self.requests.append({"method": method, "path": path, "headers": headers, "body": body})
        if self.refuse:
            return self.refuse, {"kind": "Status", "message": f"refused with {self.refuse}"}
        if path != f"/api/v1/namespaces/{NAMESPACE}/configmaps/{CONFIG_MAP}":
            return 404, {"kind": "Status", "message": "not found"}
        if method == "PATCH":
            patch = json.loads(body)
            if patch["metadata"]["resourceVersion"] != str(self.version):
                return 409, {"kind": "Status", "message": "the object has been modified"}
            self.data.update(patch["data"])
            self.version += 1
        metadata = {"name": CONFIG_MAP, "resourceVersion": str(self.version)}
        return 200, {"kind": "ConfigMap", "metadata": metadata, "data": self.data}

    def patches(self) -> list[dict]:
        return [r for r in self.requests if r["method"] == "PATCH"]


@contextlib.contextmanager
def api_server(tls: Path) -> Iterator[FakeApiServer]:
    fake = FakeApiServer()

    class Handler(BaseHTTPRequestHandler):
        def handle_one(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, answer = fake.answer(self.command, self.path, dict(self.headers), body)
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PATCH = handle_one

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls / "cert.pem", tls / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    fake.url = f"https://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def test_the_recorder_patches_the_config_map_once(files, account, tls):
    serving, decided = files
    with api_server(tls) as fake:
        recorder = ConfigMapRecorder(serving, decided, ApiServer(fake.url, account))
        assert recorder.record(TRIAL, DECIDED.decision, []) is True
        # the pods' mount has not caught up yet: the next look finds it in the ConfigMap
        assert recorder.record(TRIAL, DECIDED.decision, []) is False
    [get, patch, _] = fake.requests
    assert get["method"] == "GET" and len(fake.patches()) == 1
    assert patch["path"] == f"/api/v1/namespaces/{NAMESPACE}/configmaps/{CONFIG_MAP}"
    assert patch["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert patch["headers"]["Content-Type"] == MERGE_PATCH
    body = json.loads(patch["body"])
    assert body["metadata"] == {"resourceVersion": "7"}, "not conditional on what it read"
    assert decisions.parse(body["data"][DECISION_KEY], "the PATCH") == DECIDED
    assert set(body["data"]) == {DECISION_KEY}


def test_a_refusing_api_server_is_named_and_the_decision_recorded_at_a_later_look(
    files, account, tls
):
    serving, decided = files
    said: list[str] = []
    with (
        api_server(tls) as fake,
        proxy_answering(proxy_figures(TRIAL, half(40, 0.5))) as proxy,
    ):
        recorder = ConfigMapRecorder(serving, decided, ApiServer(fake.url, account))
        decider = Decider(recorder, lambda: headless_fleet_of(proxy), said.append)
        fake.refuse = 403
        assert decider.once() is None and decider.once() is None
        assert not fake.data, "recorded while refused"
        [line] = said
        assert "the abort of 2.0 is not recorded yet" in line and "tried again" in line
        assert "HTTP 403 Forbidden: refused with 403" in line
        assert f"configmaps/{CONFIG_MAP}" in line
        fake.refuse = None
        decision = decider.once()
    recorded = decisions.parse(fake.data[DECISION_KEY], "the ConfigMap")
    assert decision is not None and recorded.decision == decision
    assert recorded.trial == TRIAL and "summed over 1 of 1 proxies" in decision.reason
    assert said[-1].startswith("rollout of 2.0 (canary) aborted: ")


def headless_fleet_of(proxy: str):
    """The fleet as DNS finds it, `localhost` standing in for the Service's name."""
    return headless_fleet("localhost", int(proxy.rpartition(":")[2]))


def test_an_api_server_that_cannot_be_reached_or_used_is_named(account, tmp_path):
    with pytest.raises(
        ApiError, match=r"GET .*configmaps/petseg-decisions: the API server \S+ is not reached"
    ):
        ApiServer("https://127.0.0.1:9", account).get_config_map(CONFIG_MAP)
    with pytest.raises(
        ApiError, match=r"no ServiceAccount namespace at .*automountServiceAccountToken"
    ):
        ApiServer("https://127.0.0.1:9", tmp_path / "nothing").get_config_map(CONFIG_MAP)


def test_an_api_server_with_another_certificate_is_refused(files, account, tls, tmp_path):
    """TLS is checked against the cluster's CA alone, never the system's store or nothing."""
    (tmp_path / "other").mkdir()
    other = self_signed(tmp_path / "other")
    with api_server(other) as fake, pytest.raises(ApiError, match="CERTIFICATE_VERIFY_FAILED"):
        ApiServer(fake.url, account).get_config_map(CONFIG_MAP)


# -- the fleet ---------------------------------------------------------------------------------
def test_the_proxies_are_every_address_the_name_resolves_to(files, account):
    fleet = headless_fleet("localhost", 5001)
    assert "http://127.0.0.1:5001" in fleet.proxies and fleet.members == []
    assert all(p in ("http://127.0.0.1:5001", "http://[::1]:5001") for p in fleet.proxies)
    with pytest.raises(
        OSError, match=r"petseg-proxies\.invalid does not resolve .*no ready server"
    ):
        headless_fleet("petseg-proxies.invalid", 5001)
    serving, decided = files
    said: list[str] = []
    recorder = ConfigMapRecorder(serving, decided, ApiServer("https://127.0.0.1:9", account))
    decider = Decider(recorder, lambda: headless_fleet("petseg-proxies.invalid", 5001), said.append)
    assert decider.once() is None
    assert said == [
        "petseg rollout watch: cannot find the fleet (petseg-proxies.invalid does not resolve "
        "(Name or service not known): no ready server pod behind the headless Service, or no "
        "such Service in this namespace): nothing decided"
    ]


# -- `petseg rollout watch --kubernetes`, as the decider's pod runs it ----------------------------
def test_the_kubernetes_decider_records_the_fleets_abort_in_the_config_map(files, account, tls):
    serving, decided = files
    with (
        api_server(tls) as fake,
        proxy_answering(proxy_figures(TRIAL, half(40, 0.5))) as proxy,
    ):
        heartbeat = account.parent / "heartbeat"
        port = proxy.rpartition(":")[2]
        watch = started(
            "--state", str(serving), "rollout", "watch", "--kubernetes", "--interval", "0.2",
            "--decisions", str(decided),
            "--service", f"localhost:{port}", "--api-server", fake.url,
            "--service-account", str(account), "--heartbeat", str(heartbeat),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while not fake.patches() and watch.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)  # a few more looks: the mount has not caught up, nothing rewritten
        finally:
            watch.send_signal(signal.SIGTERM)
            out, err = watch.communicate(timeout=30)
    assert watch.returncode == 0, err
    assert len(fake.patches()) == 1, err
    recorded = decisions.parse(fake.data[DECISION_KEY], "the ConfigMap")
    assert recorded.trial == TRIAL and recorded.decision.outcome == "aborted"
    assert "the fleet's decider" in recorded.decision.by
    assert f"http://127.0.0.1:{port}" in recorded.decision.figures["proxies"]
    assert "rollout of 2.0 (canary) aborted: " in err
    assert f"with the decisions of ConfigMap {CONFIG_MAP}" in out
    assert heartbeat.is_file()
    assert state.load(serving).rollout == TRIAL, "the declared state was written"
