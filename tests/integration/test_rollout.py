"""Rollouts against a real TorchServe holding 1.0 and 2.0, the real proxy in front: the canary's
share, a shadow that never touches the user's answer, promote and abort under load, the guard
that stops a failing candidate by itself, and a restart that resumes the trial."""

from __future__ import annotations

import json
import math
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests

from petseg.packaging.archive import build_archive
from petseg.serving.launcher import running_instance, stop
from tests.support import images
from tests.support.cli import petseg
from tests.support.stack import Web, name_ports, running_web, scraped

PHOTOS = [images.jpeg(160 + 8 * n, 120) for n in range(4)]
Z_999 = 3.2905
"""Two-sided 99.9% quantile of the normal distribution: the bounds of a binomial share."""


def within_binomial(hits: int, total: int, percent: float) -> bool:
    p = percent / 100
    spread = Z_999 * math.sqrt(total * p * (1 - p))
    return total * p - spread <= hits <= total * p + spread


@pytest.fixture(scope="module")
def deployment(model_store: Path, tiny_export: Path, tmp_path_factory) -> Iterator[tuple]:
    """`petseg serve` with 1.0 (the default) and 2.0, one worker each, and the proxy."""
    folder = tmp_path_factory.mktemp("rollout")
    store = folder / "store"
    store.mkdir()
    shutil.copy(model_store / "petseg.mar", store)
    build_archive(tiny_export, store, name="petseg-v2", version="2.0")
    versions = {
        "1.0": {"archive": "petseg.mar", "workers": 1},
        "2.0": {"archive": "petseg-v2.mar", "workers": 1},
    }
    state = folder / "serving.json"
    state.write_text(json.dumps({"default": "1.0", "versions": versions}))
    options = ("--workdir", str(folder / "ts"), "--model-store", str(store), "--state", str(state))
    done = petseg(*options, "serve", "--free-ports")
    assert done.returncode == 0, done.stderr
    instance = running_instance(folder / "ts")
    name_ports(instance)
    try:
        with running_web(instance) as web:
            yield options, web, state
    finally:
        stop(running_instance(folder / "ts"))


def ok(*argv: str) -> str:
    done = petseg(*argv)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def upload(url: str, photo: bytes, output: str = "mask", **params: str) -> requests.Response:
    return requests.post(
        f"{url}/api/segment",
        params={"output": output, **params},
        files={"file": ("a.jpg", photo, "image/jpeg")},
        timeout=60,
    )


def load(url: str, total: int, clients: int = 8) -> list[requests.Response]:
    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(lambda n: upload(url, PHOTOS[n % len(PHOTOS)]), range(total)))


def versions(answers: list[requests.Response]) -> Counter:
    return Counter(a.headers.get("X-Petseg-Model-Version") for a in answers)


def figures(web: Web) -> dict:
    return requests.get(f"{web.operator_url}/status.json", timeout=10).json()


def test_a_canary_answers_its_share_and_an_abort_ends_it(deployment):
    options, web, state = deployment
    ok(*options, "rollout", "canary", "2.0", "--percent", "20", "--min-requests", "5000")
    assert json.loads(state.read_text())["rollout"]["mode"] == "canary"
    answers = load(web.url, 1000)
    assert Counter(a.status_code for a in answers) == {200: 1000}
    served = versions(answers)
    assert within_binomial(served["2.0"], 1000, 20), served
    print(f"canary 20% of 1000 uploads: {dict(served)} (99.9% bounds 158-242)")
    ok(*options, "rollout", "abort")
    decision = json.loads(state.read_text())["rollout"]["decision"]
    assert decision["outcome"] == "aborted" and decision["reason"] == "aborted by hand"
    assert versions(load(web.url, 100)) == {"1.0": 100}
    assert figures(web)["rollout"]["decision"] == decision
    again = petseg(*options, "rollout", "abort")
    assert again.returncode == 2 and "was aborted by" in again.stderr, "a second record"
    assert json.loads(state.read_text())["rollout"]["decision"] == decision


def test_a_shadow_never_changes_the_users_answer_and_compares_the_masks(deployment):
    options, web, _ = deployment
    expected = [upload(web.url, photo, version="1.0").content for photo in PHOTOS]
    ok(*options, "rollout", "shadow", "2.0", "--percent", "50", "--min-requests", "5000")
    answers = [upload(web.url, PHOTOS[n % 4]) for n in range(200)]
    assert all(a.status_code == 200 for a in answers)
    assert versions(answers) == {"1.0": 200}
    assert all(a.content == expected[n % 4] for n, a in enumerate(answers)), "a body changed"
    counts = shadow_counts_once_settled(web)
    picked = sum(counts.values())
    assert within_binomial(int(picked), 200, 50), counts
    assert counts["compared"] > 0 and counts["candidate_failed"] == counts["default_failed"] == 0
    trial = figures(web)["rollout"]
    assert trial["mean_agreement"] == 1.0, trial  # 2.0 holds 1.0's weights
    assert trial["mean_iou"] and all(v == 1.0 for v in trial["mean_iou"].values())
    assert default_masks(web) == {"reused": counts["compared"], "asked": 0}, "the mask was redone"
    overlays = [upload(web.url, PHOTOS[n % 4], output="overlay") for n in range(40)]
    assert all(a.status_code == 200 for a in overlays)
    after = shadow_counts_once_settled(web)
    assert after["compared"] > counts["compared"] and after["candidate_failed"] == 0
    assert default_masks(web)["asked"] == after["compared"] - counts["compared"]
    assert figures(web)["rollout"]["mean_agreement"] == 1.0
    print(f"shadow 50% of 200 mask uploads, then 40 overlays: {after}, {default_masks(web)}")


def default_masks(web: Web) -> dict[str, float]:
    """Where the shadow took the default's masks from: the user's answer or a second call."""
    return {
        source: scraped(
            web.operator_url,
            "petseg_rollout_shadow_default_masks_total",
            version="2.0",
            source=source,
        )
        for source in ("reused", "asked")
    }


def shadow_counts_once_settled(web: Web) -> dict[str, float]:
    """The shadow outcomes once the background work is done: unchanged for a second."""
    counts: dict[str, float] = {}
    unchanged = 0
    deadline = time.monotonic() + 60
    while unchanged < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
        now = {
            outcome: scraped(
                web.operator_url,
                "petseg_rollout_shadow_uploads_total",
                version="2.0",
                outcome=outcome,
            )
            for outcome in ("compared", "skipped", "default_failed", "candidate_failed")
        }
        unchanged = unchanged + 1 if now == counts else 0
        counts = now
    return counts


def test_killing_the_candidates_workers_during_a_shadow_fails_no_user(deployment):
    options, web, _ = deployment
    ok(*options, "rollout", "shadow", "2.0", "--percent", "100", "--min-requests", "5000")
    client = running_instance(Path(options[1])).client()
    done = threading.Event()

    def kill_soon() -> None:
        time.sleep(0.5)
        for worker in client.workers("2.0"):
            psutil.Process(worker["pid"]).send_signal(signal.SIGKILL)
        done.set()

    killer = threading.Thread(target=kill_soon)
    killer.start()
    answers = load(web.url, 150, clients=4)
    killer.join()
    assert done.is_set()
    assert Counter(a.status_code for a in answers) == {200: 150}
    assert versions(answers) == {"1.0": 150}
    ok(*options, "rollout", "abort")


def test_promote_and_abort_under_load_lose_no_request(deployment):
    options, web, state = deployment

    def ends_under_load(candidate: str, percent: str, ending: str) -> None:
        """A canary of ``candidate``, then ``ending`` it while 8 clients upload: no loss."""
        ok(*options, "rollout", "canary", candidate, "--percent", percent, "--min-requests", "5000")
        with ThreadPoolExecutor(1) as background:
            running = background.submit(load, web.url, 300, 8)
            time.sleep(1)
            ok(*options, "rollout", ending)
            answers = running.result()
        assert Counter(a.status_code for a in answers) == {200: 300}

    ends_under_load("2.0", "30", "promote")
    assert json.loads(state.read_text())["default"] == "2.0"
    assert "rollout" not in json.loads(state.read_text())
    assert versions(load(web.url, 50)) == {"2.0": 50}

    ends_under_load("1.0", "50", "abort")
    assert versions(load(web.url, 50)) == {"2.0": 50}
    ok(*options, "models", "set-default", "1.0")


def test_the_guard_stops_a_failing_candidate_by_itself_and_says_why(deployment):
    options, web, _ = deployment
    client = running_instance(Path(options[1])).client()
    ok(*options, "models", "scale", "0", "--version", "2.0")  # 2.0 now answers 503
    deadline = time.monotonic() + 60
    while client.workers("2.0") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not client.workers("2.0")
    try:
        ok(*options, "rollout", "canary", "2.0", "--percent", "50", "--min-requests", "20")
        answers = load(web.url, 120, clients=4)
        assert Counter(a.status_code for a in answers) == {200: 120}, "a user saw the failure"
        assert versions(answers) == {"1.0": 120}
        trial = figures(web)["rollout"]
        assert "candidate requests failed" in trial["stopped_here"]
        assert trial["candidate_requests"] < 120 * 0.5, "the guard let it run on"
        assert scraped(web.operator_url, "petseg_rollout_aborted", version="2.0") == 1
        status = petseg(*options, "rollout", "status", "--proxy", web.operator_url)
        assert status.returncode == 1 and "stopped by this proxy: 20 of 20" in status.stdout
        before = trial["candidate_requests"]
        load(web.url, 40, clients=4)
        assert figures(web)["rollout"]["candidate_requests"] == before
    finally:
        ok(*options, "rollout", "abort")
        ok(*options, "models", "scale", "1", "--version", "2.0")


def restarted(options: tuple[str, ...]) -> Counter:
    """TorchServe and its proxy stopped and started again: the versions 100 uploads got."""
    ok(*options, "stop")
    ok(*options, "serve", "--free-ports")
    instance = running_instance(Path(options[1]))
    name_ports(instance)
    with running_web(instance) as fresh:
        return versions(load(fresh.url, 100))


def test_a_restart_mid_rollout_resumes_it_and_one_after_an_abort_does_not(deployment):
    options, _, state = deployment
    ok(*options, "rollout", "canary", "2.0", "--percent", "50", "--min-requests", "5000")
    served = restarted(options)
    assert within_binomial(served["2.0"], 100, 50), served
    assert json.loads(state.read_text())["rollout"]["version"] == "2.0"
    ok(*options, "rollout", "abort")
    assert restarted(options) == {"1.0": 100}, "a restart resumed the aborted trial"
    assert json.loads(state.read_text())["rollout"]["decision"]["outcome"] == "aborted"
