"""The rollout's record and the fleet's decider, against real HTTP listeners standing in for
proxies' operators' listeners (each serves the /status.json a proxy would), and the keeper's
crash-loop back-off."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from petseg.fleet.keeper import BACKOFF_FIRST_S, BACKOFF_MAX_S, STABLE_S, Backoff, Keeper
from petseg.rollout.decider import Decider, Fleet, StateFile
from petseg.serving import state
from petseg.serving.launcher import Instance
from petseg.serving.state import ServingState, StateError, VersionSpec
from tests.support.proxies import half, proxy_answering, proxy_figures
from torchserve_client import ServingReport
from torchserve_client.rollout import Decision, Rollout, TrialCounts

TRIAL = Rollout("2.0", "shadow", 100, min_requests=30, started_at=1_700_000_000.0)
VERSIONS = {"1.0": VersionSpec("petseg.mar"), "2.0": VersionSpec("petseg-v2.mar")}


def test_two_proxies_that_each_saw_half_fail_the_trial_together():
    one, other = half(20, 0.6), half(20, 0.6)
    assert TRIAL.verdict(one) is None and TRIAL.verdict(other) is None
    total = TrialCounts()
    total.add(one)
    total.add(other)
    assert total.compared == 40 and total.classes == {"cat": 40}
    assert "mean shadow agreement 0.6000 over 40 photos" in TRIAL.verdict(total)


def test_a_decision_is_strict_and_says_what_is_wrong():
    good = {"outcome": "aborted", "by": "me", "reason": "bad masks", "figures": {}, "at": 1.0}
    assert Decision.from_dict(good).reason == "bad masks"
    for broken, message in (
        ({**good, "outcome": "promoted"}, "outcome 'promoted'"),
        ({**good, "why": "x"}, "unknown key(s) ['why']"),
        ({"outcome": "aborted", "by": "me"}, "missing ['reason']"),
        ({**good, "reason": ""}, "reason must be a non-empty string"),
        ({**good, "at": "noon"}, "decision at must be a time"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            Rollout.from_dict({**TRIAL.as_dict(), "decision": broken})


def test_an_aborted_trial_promotes_nothing_and_its_record_outlives_the_candidate():
    declared = ServingState("1.0", VERSIONS, TRIAL)
    aborted = declared.aborted(Decision("aborted", "the decider", "bad masks"))
    assert not aborted.rollout.active and aborted.rollout.trial == TRIAL
    with pytest.raises(StateError, match="was aborted by the decider: bad masks"):
        aborted.promoted()
    with pytest.raises(StateError, match="was aborted"):
        aborted.aborted(Decision("aborted", "someone else", "again"))
    gone = aborted.unregistered("2.0")
    assert gone.rollout == aborted.rollout and "2.0" not in gone.versions
    assert ServingState.from_dict(gone.as_dict()) == gone, "the record does not survive a save"
    with pytest.raises(StateError, match="is on trial"):
        declared.unregistered("2.0")


@pytest.fixture
def fleet_files(tmp_path: Path) -> tuple[Path, Instance]:
    """A state with TRIAL running and one instance whose report carries it."""
    state_file = tmp_path / "serving.json"
    state.save(ServingState("1.0", VERSIONS, TRIAL), state_file)
    member = Instance(tmp_path / "instance")
    member.workdir.mkdir()
    ServingReport(str(state_file), True, rollout=TRIAL.as_dict()).write(member.workdir)
    return state_file, member


def test_the_decider_records_one_abort_from_the_fleets_sum_and_names_a_silent_proxy(
    fleet_files, tmp_path
):
    state_file, member = fleet_files
    said: list[str] = []
    other_trial = Rollout("2.0", "shadow", 100, min_requests=30, started_at=1.0)
    with (
        proxy_answering(proxy_figures(TRIAL, half(20, 0.6))) as one,
        proxy_answering(proxy_figures(TRIAL, half(20, 0.6))) as two,
        proxy_answering(proxy_figures(other_trial, half(500, 0.0))) as stale,
        proxy_answering({"rollout": {"version": "2.0"}}) as nonsense,
    ):
        silent = "http://127.0.0.1:9"  # the discard port: nothing listens
        proxies = [one, two, stale, nonsense, silent]
        decider = Decider(StateFile(state_file), lambda: Fleet([member], proxies), said.append)
        decision = decider.once()
        assert decision is not None and decider.once() is None, "decided twice"
    assert "summed over 2 of 5 proxies" in decision.reason
    assert decision.figures["compared"] == 40 and decision.figures["proxies"] == [one, two]
    recorded = state.load(state_file).rollout
    assert recorded.decision == decision and recorded.trial == TRIAL
    assert Rollout.from_dict(ServingReport.read(member.workdir).rollout) == recorded
    problems = "\n".join(said)
    assert f"proxy {silent}: no answer" in problems
    assert f"proxy {stale}: does not carry this trial" in problems
    assert f"proxy {nonsense}: unusable figures" in problems
    assert problems.count(silent) == 1, "the same problem said at every look"


def test_a_malformed_state_or_no_proxy_decides_nothing_and_loses_nothing(fleet_files):
    state_file, member = fleet_files
    said: list[str] = []
    decider = Decider(
        StateFile(state_file), lambda: Fleet([member], ["http://127.0.0.1:9"]), said.append
    )
    assert decider.once() is None and state.load(state_file).rollout == TRIAL
    good = state_file.read_text()
    state_file.write_text(good.replace('"default"', '"defualt"'))
    assert decider.once() is None
    assert state_file.read_text() == good.replace('"default"', '"defualt"'), "rewritten"
    assert any("cannot read the serving state" in line and "defualt" in line for line in said)
    assert Rollout.from_dict(ServingReport.read(member.workdir).rollout) == TRIAL


def test_a_person_who_changed_the_trial_meanwhile_keeps_the_last_word(fleet_files):
    state_file, member = fleet_files
    newer = Rollout("2.0", "canary", 10, min_requests=30, started_at=1_800_000_000.0)
    with proxy_answering(proxy_figures(TRIAL, half(40, 0.5))) as one:
        decider = Decider(StateFile(state_file), lambda: Fleet([member], [one]), lambda line: None)
        state.save(ServingState("1.0", VERSIONS, newer), state_file)
        assert decider.once() is None, "the figures of the old trial decided the new one"
    assert state.load(state_file).rollout == newer


def test_a_crash_loop_backs_off_doubling_and_a_stable_process_resets_it():
    backoff, now, delays = Backoff(), 1000.0, []
    assert backoff.restarted(now, ok=True) == 0, "the first restart waits"
    for _ in range(7):
        now += 1
        delays.append(backoff.restarted(now, ok=True))
    assert delays[:3] == [BACKOFF_FIRST_S, 2 * BACKOFF_FIRST_S, 4 * BACKOFF_FIRST_S]
    assert max(delays) == BACKOFF_MAX_S
    assert backoff.restarted(now + 1, ok=False) == BACKOFF_MAX_S
    assert backoff.restarted(now + 1 + STABLE_S + 1, ok=True) == 0


def test_the_keeper_ends_when_the_cluster_it_keeps_is_gone(tmp_path, caplog):
    Keeper(tmp_path).run(threading.Event())  # returns instead of raising or spinning
    assert "nothing left to keep" in caplog.text
