"""The serving state file without a TorchServe: strict reading, checked changes, atomic writes,
one writer at a time, and what an archive's manifest says."""

from __future__ import annotations

import json
import os
import threading
import time
import zipfile
from pathlib import Path

import pytest

from petseg.serving import state
from petseg.serving.state import ServingState, StateError, VersionSpec
from torchserve_client.report import ServingReport

TWO = {
    "default": "1.0",
    "versions": {"1.0": {"archive": "petseg.mar", "workers": 2}, "2.0": {"archive": "v2.mar"}},
}


def test_the_shipped_state_serves_the_demo_archive_with_two_workers():
    shipped = state.load(state.STATE_FILE)
    assert shipped.default == "1.0"
    assert shipped.versions == {"1.0": VersionSpec("petseg.mar", workers=2)}


def test_a_state_round_trips_through_its_file(tmp_path):
    path = tmp_path / "serving.json"
    declared = ServingState.from_dict(TWO)
    state.save(declared, path)
    assert state.load(path) == declared
    assert json.loads(path.read_text()) == TWO


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ([], "JSON object"),
        ({"default": "1.0", "versions": {}, "extra": 1}, "unknown key(s) ['extra']"),
        ({"default": "3.0", "versions": TWO["versions"]}, "'3.0' is not one of the declared"),
        ({"default": "1.0", "versions": {"1.0": {"archive": "a.mar", "worker": 2}}}, "'worker'"),
        ({"default": "1.0", "versions": {"1.0": {"workers": 2}}}, "no 'archive'"),
        ({"default": "1.0", "versions": {"1.0": {"archive": "../x.mar"}}}, "not a .mar file"),
        ({"default": "1.0", "versions": {"1.0": {"archive": "a.mar", "workers": -1}}}, ">= 0"),
        ({"default": "1.0", "versions": {"1.0": {"archive": "a.mar", "workers": "2"}}}, "'2'"),
        ({"default": "1.0", "versions": {"1.0": {"archive": "a.mar", "batch_size": 0}}}, ">= 1"),
    ],
)
def test_a_malformed_state_is_refused_with_what_to_change(data, words, tmp_path):
    path = tmp_path / "serving.json"
    path.write_text(json.dumps(data))
    with pytest.raises(StateError) as refused:
        state.load(path)
    assert words in str(refused.value) and str(path) in str(refused.value)


def test_missing_or_broken_json_is_a_state_error(tmp_path):
    with pytest.raises(StateError, match="no serving state"):
        state.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(StateError, match="not valid JSON"):
        state.load(tmp_path / "bad.json")


def test_changes_are_checked_before_anything_is_asked():
    declared = ServingState.from_dict(TWO)
    assert declared.with_default("2.0").default == "2.0"
    assert declared.scaled("2.0", 3).versions["2.0"].workers == 3
    assert set(declared.unregistered("2.0").versions) == {"1.0"}
    assert ServingState().registered("1.0", VersionSpec("petseg.mar")).default == "1.0"
    with pytest.raises(StateError, match=r"9\.9 is not in the serving state"):
        declared.with_default("9.9")
    with pytest.raises(StateError, match="is the default"):
        declared.unregistered("1.0")
    with pytest.raises(StateError, match=">= 0"):
        declared.scaled("1.0", -2)
    last = ServingState("1.0", {"1.0": VersionSpec("petseg.mar")})
    assert last.unregistered("1.0") == ServingState()


def test_a_crash_while_writing_leaves_the_old_state_and_no_stray_file(tmp_path, monkeypatch):
    path = tmp_path / "serving.json"
    state.save(ServingState.from_dict(TWO), path)
    before = path.read_bytes()

    def crash(source: str, target: str) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        state.save(ServingState.from_dict(TWO).with_default("2.0"), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["serving.json"]


def test_the_lock_lets_one_writer_in_at_a_time(tmp_path):
    path = tmp_path / "serving.json"
    inside: list[str] = []

    def writer(name: str) -> None:
        with state.locked(path):
            inside.append(f"{name} in")
            time.sleep(0.2)
            inside.append(f"{name} out")

    threads = [threading.Thread(target=writer, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert inside in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])


def archive(path: Path, manifest: object) -> None:
    with zipfile.ZipFile(path, "w") as mar:
        mar.writestr(state.MANIFEST, json.dumps(manifest))


def test_an_archives_version_comes_from_its_manifest(tmp_path):
    archive(tmp_path / "v2.mar", {"model": {"modelName": "petseg-v2", "modelVersion": "2.0"}})
    assert state.archive_version(tmp_path, "v2.mar") == "2.0"
    assert state.for_archive(tmp_path, "v2.mar") == ServingState(
        "2.0", {"2.0": VersionSpec("v2.mar")}
    )
    archive(tmp_path / "odd.mar", {"model": {}})
    (tmp_path / "cut.mar").write_bytes(b"PK\x03\x04")
    for name, words in [
        ("none.mar", "not in the model store"),
        ("odd.mar", "not a readable model archive"),
        ("cut.mar", "not a readable model archive"),
    ]:
        with pytest.raises(state.ArchiveError, match=words):
            state.archive_version(tmp_path, name)


def test_a_report_reads_back_and_a_torn_one_reads_as_none(tmp_path):
    report = ServingReport("serving.json", True, ["registered 1.0"], ["version 3.0: missing"])
    report.write(tmp_path)
    assert ServingReport.read(tmp_path) == report
    (tmp_path / "serving-report.json").write_text('{"state": ')
    assert ServingReport.read(tmp_path) is None
    ServingReport.remove(tmp_path)
    assert ServingReport.read(tmp_path) is None
