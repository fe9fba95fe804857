"""The declared serving state: which archives TorchServe serves as which versions of petseg,
which version is the default, and each version's workers (and batching, where it should differ
from what the archive asks for).

TorchServe keeps what the management API changes in its Java process only; its own snapshots
are skipped whenever a config file is given (--ts-config) and our launchers also pass --ncs.
So the state lives here, in one reviewable JSON file (config/serving.json unless --state says
otherwise), and every start applies it (petseg.serving.reconcile). A `petseg models` command changes
the running TorchServe first and writes the file only once TorchServe accepted the change:
under an exclusive lock (two operators at once take turns) and by an atomic replace (a crash
leaves the old file or the new one, never a torn one).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from petseg import ROOT
from torchserve_client.report import write_atomically
from torchserve_client.rollout import Decision, Rollout

STATE_FILE = ROOT / "config" / "serving.json"
ARCHIVE_NAME = re.compile(r"[A-Za-z0-9_.-]+\.mar")
"""A file name in the model store, nothing else: TorchServe's allowed_urls says the same."""
MANIFEST = "MAR-INF/MANIFEST.json"


class StateError(ValueError):
    """A state file that cannot be used as it is: the message says what to change."""


class ArchiveError(ValueError):
    """An archive the state names that TorchServe could not serve as declared."""


@dataclass(frozen=True)
class VersionSpec:
    """How one version is served. ``workers`` None: TorchServe's ``default_workers_per_model``
    (config/config.properties); ``batch_size``, ``max_batch_delay_ms`` None: what the archive's
    model-config.yaml asks for. A number overrides either."""

    archive: str
    workers: int | None = None
    batch_size: int | None = None
    max_batch_delay_ms: int | None = None

    def __post_init__(self) -> None:
        if not ARCHIVE_NAME.fullmatch(self.archive):
            raise StateError(f"archive {self.archive!r} is not a .mar file name in the store")
        if self.workers is not None:
            _check_int("workers", self.workers, minimum=0)
        if self.batch_size is not None:
            _check_int("batch_size", self.batch_size, minimum=1)
        if self.max_batch_delay_ms is not None:
            _check_int("max_batch_delay_ms", self.max_batch_delay_ms, minimum=0)

    def as_dict(self) -> dict[str, Any]:
        return {name: value for name, value in asdict(self).items() if value is not None}


@dataclass(frozen=True)
class ServingState:
    """Versions by version string, and the default one (None only when nothing is served)."""

    default: str | None = None
    versions: dict[str, VersionSpec] = field(default_factory=dict)
    rollout: Rollout | None = None
    """A candidate on trial beside the default (`petseg rollout`), or the record of the last
    trial's end (its ``decision``); None: none."""

    def __post_init__(self) -> None:
        trial = self.rollout
        if trial is not None and trial.active and trial.version not in self.versions:
            raise StateError(f"the rollout's version {trial.version!r} is not declared")
        if trial is not None and trial.active and trial.version == self.default:
            raise StateError(f"the rollout's version {trial.version!r} is the default")
        if self.versions and self.default not in self.versions:
            raise StateError(
                f"the default version {self.default!r} is not one of the declared versions "
                f"({', '.join(sorted(self.versions))})"
            )
        if not self.versions and self.default is not None:
            raise StateError(f"the default version {self.default!r} is not declared")

    @classmethod
    def from_dict(cls, data: Any) -> ServingState:
        """Strict: unknown or misspelt keys are refused, not ignored."""
        if not isinstance(data, dict):
            raise StateError("the state must be a JSON object with 'default' and 'versions'")
        _check_keys("the state", data, {"default", "versions", "rollout"})
        versions = data.get("versions") or {}
        if not isinstance(versions, dict):
            raise StateError("'versions' must map each version to its settings")
        known = {spec.name for spec in fields(VersionSpec)}
        parsed = {}
        for version, settings in versions.items():
            if not isinstance(settings, dict):
                raise StateError(f"version {version!r}: settings must be a JSON object")
            _check_keys(f"version {version!r}", settings, known)
            if "archive" not in settings:
                raise StateError(f"version {version!r}: no 'archive' (a .mar in the store)")
            try:
                parsed[str(version)] = VersionSpec(**settings)
            except StateError as exc:
                raise StateError(f"version {version!r}: {exc}") from None
        default = data.get("default")
        try:
            rollout = None if data.get("rollout") is None else Rollout.from_dict(data["rollout"])
        except ValueError as exc:
            raise StateError(str(exc)) from None
        return cls(None if default is None else str(default), parsed, rollout)

    def as_dict(self) -> dict[str, Any]:
        data = {
            "default": self.default,
            "versions": {v: self.versions[v].as_dict() for v in sorted(self.versions)},
        }
        if self.rollout is not None:
            data["rollout"] = self.rollout.as_dict()
        return data

    # -- the changes `petseg models` makes; each returns a new, checked state -----------------
    def registered(self, version: str, spec: VersionSpec) -> ServingState:
        """``version`` added (the first one becomes the default, as in TorchServe)."""
        versions = {**self.versions, version: spec}
        return replace(self, default=self.default or version, versions=versions)

    def scaled(self, version: str, workers: int) -> ServingState:
        spec = replace(self._spec(version), workers=workers)
        return replace(self, versions={**self.versions, version: spec})

    def with_default(self, version: str) -> ServingState:
        """``version`` the default; a rollout of it ends there (it is promoted, or a person
        chose it after its trial was aborted)."""
        self._spec(version)
        ended = self.rollout is not None and self.rollout.version == version
        return replace(self, default=version, rollout=None if ended else self.rollout)

    def promoted(self) -> ServingState:
        """The version on trial made the default. Never one whose trial was decided against:
        that takes a new trial (`petseg rollout shadow|canary`) or a person's set-default."""
        trial = self.on_trial()
        return self.with_default(trial.version)

    def aborted(self, decision: Decision) -> ServingState:
        """The running trial ended by ``decision``, which stays in the state as its record."""
        return replace(self, rollout=self.on_trial().decided(decision))

    def on_trial(self) -> Rollout:
        """The rollout that takes uploads now; a StateError saying why there is none."""
        trial = self.rollout
        if trial is None:
            raise StateError("no rollout is on: start one with `petseg rollout shadow|canary`")
        if not trial.active:
            decision = trial.decision
            raise StateError(
                f"the rollout of {trial.version} was {decision.outcome} by {decision.by}: "
                f"{decision.reason}; start a new trial with `petseg rollout shadow|canary`"
            )
        return trial

    def unregistered(self, version: str) -> ServingState:
        self._spec(version)
        if self.rollout is not None and self.rollout.active and self.rollout.version == version:
            raise StateError(f"{version} is on trial: `petseg rollout abort` first")
        rest = {v: spec for v, spec in self.versions.items() if v != version}
        default = self.default if self.default != version else None
        if default is None and rest:
            raise StateError(f"{version} is the default: set another version as default first")
        return replace(self, default=default, versions=rest)

    def with_rollout(self, rollout: Rollout | None) -> ServingState:
        """A trial started (or changed), or ended with None."""
        if rollout is not None:
            self._spec(rollout.version)
        return replace(self, rollout=rollout)

    def _spec(self, version: str) -> VersionSpec:
        if version not in self.versions:
            raise StateError(
                f"version {version} is not in the serving state (it declares "
                f"{', '.join(sorted(self.versions)) or 'none'})"
            )
        return self.versions[version]


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise StateError(f"{name} must be a whole number >= {minimum}, not {value!r}")


def _check_keys(where: str, data: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise StateError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")


# -- the file ------------------------------------------------------------------------------------
def load(path: Path) -> ServingState:
    """The state in ``path``; a clear StateError for a file that is missing or malformed."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise StateError(f"no serving state at {path}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(f"{path}: not valid JSON ({exc})") from None
    try:
        return ServingState.from_dict(data)
    except StateError as exc:
        raise StateError(f"{path}: {exc}") from None


def save(state: ServingState, path: Path) -> None:
    """Replace ``path`` atomically: a crash leaves the old state or the new one."""
    write_atomically(Path(path), json.dumps(state.as_dict(), indent=2) + "\n")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the state's lock (a file beside it): one change at a time, however many
    operators run commands; blocks until the other one is done."""
    lock = Path(path).parent / f".{Path(path).name}.lock"
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- archives --------------------------------------------------------------------------------------
def archive_version(store: Path, archive: str) -> str:
    """The version ``archive`` in ``store`` holds, from its manifest; an ArchiveError saying
    what is wrong with it (missing, not an archive). Its model name does not matter: every
    archive is registered under petseg's (`petseg archive --name petseg-v2` names a file)."""
    path = Path(store) / archive
    if not path.is_file():
        raise ArchiveError(f"{archive} is not in the model store")
    try:
        with zipfile.ZipFile(path) as mar:
            manifest = json.loads(mar.read(MANIFEST))
        return str(manifest["model"]["modelVersion"])
    except (zipfile.BadZipFile, KeyError, TypeError, ValueError, OSError) as exc:
        raise ArchiveError(f"{archive} is not a readable model archive ({exc})") from None


def for_archive(store: Path, archive: str, workers: int | None = None) -> ServingState:
    """One version, the one ``archive`` holds, served with the defaults (TorchServe's workers
    unless ``workers`` says, the archive's batching): the state of a bench or test instance
    that serves one archive."""
    version = archive_version(store, archive)
    return ServingState(version, {version: VersionSpec(archive, workers)})
