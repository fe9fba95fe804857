"""Two instances (TorchServe + web proxy each) behind a real nginx, one serving state: spread,
a folder labelled through the balancer (`petseg predict`), fleet management, a rolling
replacement with a new model version, and the loss of a whole instance under load, then its
replacement converging to the fleet's state.

Every proof counts what clients saw and reads nginx's access log, which names the instance(s)
each request went to. Figures are printed for docs/several-instances.md, not asserted as timings.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from petseg.fleet import cluster as fleet
from petseg.packaging.archive import build_archive
from petseg.serving import state
from tests.support import images
from tests.support.balanced import LOST, RESENT, post_photo
from tests.support.cli import petseg
from tests.support.photos import coco_images, mask_path, photo_tree, report
from tests.support.stack import WORKERS_PER_INSTANCE, running_cluster

PHOTO = images.jpeg(200, 150)
NEXT_VERSION = "2.0"
ROLL_PAUSE_S = 0.5
"""Between two uploads of one client during the roll: 16 clients then send about 30 a second,
half of what both instances answer on 2 cores."""


@dataclass(frozen=True)
class Answer:
    status: int
    """0 when no answer came."""
    version: str | None
    at: float


@dataclass(frozen=True)
class Hop:
    """One line of nginx's access log."""

    started: float
    """When nginx received the request (its log time is the end of the answer to the client,
    which for a request in flight when an instance is killed can come after the kill)."""
    status: int
    tried: list[str]
    """Every instance (web proxy address) the request went to, in order; the last answered."""


@pytest.fixture(scope="module")
def store(model_store, tiny_export, tmp_path_factory) -> Path:
    """The archive every instance starts with, and the next version's."""
    folder = tmp_path_factory.mktemp("cluster-store")
    shutil.copy(model_store / "petseg.mar", folder)
    build_archive(tiny_export, folder, name="petseg-next", version=NEXT_VERSION)
    return folder


@pytest.fixture(scope="module")
def cluster(store, tmp_path_factory):
    with running_cluster(store, tmp_path_factory.mktemp("cluster")) as running:
        yield running


def segment(session: requests.Session, url: str) -> Answer:
    response = post_photo(session, url, PHOTO)
    if response is None:
        return Answer(0, None, time.time())
    version = response.json()["model"]["version"] if response.status_code == 200 else None
    return Answer(response.status_code, version, time.time())


def load(
    url: str,
    total: int,
    concurrency: int = 16,
    until: threading.Event | None = None,
    pause: float = 0.0,
):
    """``total`` uploads from ``concurrency`` clients; with ``until``, on until it is set too,
    each client waiting ``pause`` seconds between two uploads."""
    local = threading.local()
    answers: list[Answer] = []

    def client(_: int) -> None:
        local.session = getattr(local, "session", None) or requests.Session()
        answers.append(segment(local.session, url))
        while until is not None and not until.wait(pause):
            answers.append(segment(local.session, url))

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, range(total)))
    return answers


def hops(cluster: fleet.Cluster, since: float = 0.0) -> list[Hop]:
    """The requests nginx received at ``since`` or later."""
    lines = (Path(cluster.root) / "nginx" / "access.log").read_text().splitlines()
    found = []
    for line in lines:
        ended, status, duration, upstreams, _ = line.split("|")
        # "a, b" when nginx tried a then b; "a : b" when it went on to another upstream group
        tried = [u.strip() for u in upstreams.replace(" : ", ", ").split(",")]
        started = float(ended) - float(duration)
        if started >= since:
            found.append(Hop(started, int(status), tried))
    return found


def address(member: fleet.Member) -> str:
    return f"127.0.0.1:{member.web_port}"


def test_requests_spread_over_both_instances(cluster):
    started = time.time()
    answers = load(cluster.url, 200)
    assert Counter(a.status for a in answers) == {200: 200}
    served = Counter(hop.tried[-1] for hop in hops(cluster, started) if hop.status == 200)
    shares = {upstream: served[upstream] / 200 for upstream in map(address, cluster.members)}
    assert all(0.35 <= share <= 0.65 for share in shares.values()), shares
    print(
        f"spread of 200 requests at 16 clients: {shares}; throughput with both instances: "
        f"{throughput(cluster.url):.1f} img/s"
    )


def test_a_folder_through_the_balancer_is_spread_over_both_instances(cluster, tmp_path):
    """`petseg predict` on a folder through nginx gives what it gives against one TorchServe."""
    photos, out = tmp_path / "photos", tmp_path / "labels"
    names = photo_tree(photos, 24)
    started = time.time()
    done = petseg(
        "predict",
        str(photos),
        "--url",
        cluster.url,
        "--out-dir",
        str(out),
        "--overlay",
        "--coco",
        str(out / "coco.json"),
        "--concurrency",
        "4",
    )
    assert done.returncode == 0, done.stderr
    assert report(out)["segmented"] == 24 and report(out)["target"] == cluster.url
    assert sorted(coco_images(out)) == names
    assert all(mask_path(out, name).is_file() for name in names)
    served = Counter(hop.tried[-1] for hop in hops(cluster, started) if hop.status == 200)
    assert set(served) == set(map(address, cluster.members))
    assert sum(served.values()) == 24 + 1  # and the model card


def served(member: fleet.Member) -> tuple[str, dict[str, int]]:
    """What one instance serves: its default version and each version's workers."""
    client = member.instance.client()
    versions = {entry["modelVersion"]: len(entry["workers"]) for entry in client.describe()}
    return client.default_version(), versions


def test_model_commands_act_on_every_instance_and_the_shared_state(cluster):
    listing = Path(cluster.root) / fleet.INSTANCES_FILE
    everywhere = ("--instances", str(listing))  # the state: the one the instances applied
    done = petseg(*everywhere, "models", "register", "petseg-next.mar", "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert state.load(Path(cluster.state)).versions[NEXT_VERSION].workers == 1
    assert petseg(*everywhere, "models", "set-default", NEXT_VERSION).returncode == 0
    both = {"1.0": WORKERS_PER_INSTANCE, NEXT_VERSION: 1}
    assert all(served(m) == (NEXT_VERSION, both) for m in cluster.members)
    assert {a.version for a in load(cluster.url, 20, 4)} == {NEXT_VERSION}
    described = petseg(*everywhere, "models", "describe")
    assert described.stdout.count(f'"modelVersion": "{NEXT_VERSION}"') == 2
    assert petseg(*everywhere, "models", "set-default", "1.0").returncode == 0
    assert petseg(*everywhere, "models", "unregister", NEXT_VERSION).returncode == 0
    assert {a.version for a in load(cluster.url, 20, 4)} == {"1.0"}
    started_with = state.for_archive(Path(cluster.store), "petseg.mar", WORKERS_PER_INSTANCE)
    assert state.load(Path(cluster.state)) == started_with


def test_a_rolling_replacement_with_a_new_version_loses_no_request(cluster):
    """The state changed by hand (a reviewed edit), then rolled out, as on Kubernetes, under
    uploads from 16 clients paced to about half of what the two instances can answer: the
    successors start beside the load instead of being starved by it."""
    before = {address(member) for member in cluster.members}
    rolled_to = state.for_archive(Path(cluster.store), "petseg-next.mar", WORKERS_PER_INSTANCE)
    state.save(rolled_to, Path(cluster.state))
    rolled = threading.Event()
    with ThreadPoolExecutor(1) as background:
        running = background.submit(load, cluster.url, 16, 16, rolled, ROLL_PAUSE_S)
        time.sleep(1)
        started = time.monotonic()
        try:
            fleet.roll(cluster)
        finally:
            rolled.set()
        took = time.monotonic() - started
        answers = running.result()
    assert len(answers) >= 300
    assert Counter(a.status for a in answers) == {200: len(answers)}, "a request was lost"
    assert {a.version for a in answers} == {"1.0", NEXT_VERSION}
    assert not before & {address(member) for member in cluster.members}, "all were replaced"
    assert {a.version for a in load(cluster.url, 32)} == {NEXT_VERSION}
    print(
        f"rolling replacement: {len(answers)} requests in {took:.1f} s, all 200; "
        f"versions {Counter(a.version for a in answers)}; "
        f"{len(RESENT)} sent again after a kept-alive connection closed"
    )


def test_losing_a_whole_instance_loses_no_request(cluster):
    dead, alive = cluster.members
    killed = threading.Event()
    with ThreadPoolExecutor(1) as background:
        running = background.submit(load, cluster.url, 300, 16, killed)  # on until the kill
        time.sleep(2)
        fleet.kill_member(dead)
        killed_at = time.time()
        killed.set()
        answers = running.result()
    seen = Counter(a.status for a in answers)
    assert seen == {200: len(answers)}, f"a client saw the failure: {seen}, {LOST[-3:]}"
    after = hops(cluster, killed_at)
    assert len(after) >= 300 - 16, "the load ended before the kill"
    assert all(hop.tried[-1] == address(alive) for hop in after)
    retried = [hop for hop in after if address(dead) in hop.tried]
    assert len(retried) <= 16 + 2, "the balancer kept sending to the dead instance"
    one = throughput(cluster.url)
    print(
        f"instance killed under load: {len(answers)}/{len(answers)} answered, {len(after)} sent "
        f"after the kill; {len(retried)} requests tried the dead instance first; "
        f"throughput with one instance left: {one:.1f} img/s"
    )
    done = petseg("--instances", str(Path(cluster.root) / fleet.INSTANCES_FILE), "models", "list")
    assert done.returncode == 2 and done.stdout.count("== ") == 2
    assert "not reachable" in done.stderr and done.stderr.count("\n") == 1


def test_a_replaced_instance_comes_up_with_the_fleets_state_before_it_takes_traffic(cluster):
    """After the kill above: the dead instance is replaced (as a Deployment replaces a lost
    pod); the new one serves the state the roll left (2.0 only), nothing of the start's."""
    assert not all(fleet.alive(member) for member in cluster.members)
    (new,) = fleet.heal(cluster)
    assert all(fleet.alive(member) for member in cluster.members)
    assert served(new) == (NEXT_VERSION, {NEXT_VERSION: WORKERS_PER_INSTANCE})
    assert all(served(member) == served(new) for member in cluster.members)
    started = time.time()
    answers = load(cluster.url, 64)
    assert {(a.status, a.version) for a in answers} == {(200, NEXT_VERSION)}
    assert address(new) in {hop.tried[-1] for hop in hops(cluster, started)}, "no traffic"


def throughput(url: str, total: int = 96) -> float:
    started = time.monotonic()
    answers = load(url, total)
    assert all(a.status == 200 for a in answers)
    return total / (time.monotonic() - started)


def test_every_proxy_of_the_fleet_follows_one_rollout(cluster):
    """A canary started once for the fleet: each instance's proxy carries it out (each reads
    the trial its own TorchServe's start applied), and one abort ends it everywhere."""
    everywhere = ("--instances", str(Path(cluster.root) / fleet.INSTANCES_FILE))
    done = petseg(*everywhere, "models", "register", "petseg.mar", "--workers", "1")
    assert done.returncode == 0, done.stderr
    trial = ("rollout", "canary", "1.0", "--percent", "50", "--min-requests", "5000")
    assert petseg(*everywhere, *trial).returncode == 0
    session = requests.Session()
    for member in cluster.members:
        seen = Counter(segment(session, member.url).version for _ in range(40))
        assert seen.keys() == {"1.0", NEXT_VERSION}, (member.url, seen)
    assert petseg(*everywhere, "rollout", "abort").returncode == 0
    for member in cluster.members:
        assert {segment(session, member.url).version for _ in range(20)} == {NEXT_VERSION}
