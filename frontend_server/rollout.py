"""The web proxy's part of a model rollout (the serving state's ``rollout``, `petseg rollout`).

The operator's tools write the trial into TorchServe's serving report beside its key file; each
proxy reads it there, so every proxy of a fleet follows the state its own TorchServe applied,
and a restart resumes the trial, or keeps it ended: a recorded decision
(torchserve_client.rollout.Decision) stops the trial in every proxy that reads it. Uploads do
not read the file: each looks at its stamp (one stat(), microseconds) and the proxy reads it
again only when it changed, so a change (a person's abort, the decider's) reaches the very next
upload.

- canary: a share of uploads is answered by the candidate. A candidate that fails (5xx, no
  answer) is counted and the upload is sent to the default: the user is not the one who pays.
- shadow: after the user's answer, a share of uploads is sent again, in the background, to the
  candidate as COCO RLE, and its masks compared with the default's (frontend_server.masks):
  agreement, IoU per class, pet fraction and latency go to the metrics. The default's masks are
  read from the user's answer when it holds them (json, mask, rle, labels); only an overlay or
  polygons answer makes the default run again. Nothing of the photo or its masks is kept. A
  bounded queue drops shadow work rather than slow the proxy.
- counts: what this proxy saw of the trial, in /status.json, where the fleet's decider
  (`petseg rollout watch`) sums them over every proxy and records an abort for all of them.
- guard: the same judgement on this proxy's counts alone (Rollout.verdict) stops the trial here
  at once, a brake for a fleet without a decider (logged, ``petseg_rollout_aborted``); it binds
  this process only, until the decision is recorded.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from frontend_server import masks
from frontend_server.masks import Comparison, Segmentation, compare
from frontend_server.metrics import LATENCY_BUCKETS, Family, declare
from torchserve_client import TorchServe, TorchServeError
from torchserve_client.report import REPORT_FILE_NAME, ServingReport
from torchserve_client.rollout import Rollout, TrialCounts

log = logging.getLogger("frontend_server.rollout")
SHADOW_THREADS = 2
SHADOW_QUEUE = 8
"""Shadow comparisons waiting or running at most; beyond, a shadow is skipped (and counted)."""
AGREEMENT_BUCKETS = (0.5, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999, 1.0)
SHARE_BUCKETS = tuple(round(0.1 * n, 1) for n in range(1, 11))


ROLLOUT_FAMILIES = {
    "candidate": Family(
        Counter,
        "petseg_rollout_candidate_requests",
        "Requests the candidate version answered (canary) or was sent (shadow), by outcome",
        ("version", "mode", "outcome"),
    ),
    "shadows": Family(
        Counter,
        "petseg_rollout_shadow_uploads",
        "Uploads picked for a shadow comparison, by how it ended",
        ("version", "outcome"),
    ),
    "agreement": Family(
        Histogram,
        "petseg_rollout_shadow_agreement",
        "Share of a photo's pixels the candidate and the default give the same class",
        ("version",),
        AGREEMENT_BUCKETS,
    ),
    "iou": Family(
        Histogram,
        "petseg_rollout_shadow_iou",
        "Intersection over union of a class's masks, candidate vs default",
        ("version", "class_name"),
        AGREEMENT_BUCKETS,
    ),
    "foreground": Family(
        Histogram,
        "petseg_rollout_shadow_foreground",
        "Share of a photo's pixels segmented as a pet, by the version that said so",
        ("version", "served_by"),
        SHARE_BUCKETS,
    ),
    "latency": Family(
        Histogram,
        "petseg_rollout_shadow_seconds",
        "Time of each version's answer to a shadow comparison (the same photo, as RLE)",
        ("version", "served_by"),
        LATENCY_BUCKETS,
    ),
    "default_masks": Family(
        Counter,
        "petseg_rollout_shadow_default_masks",
        "Where a shadow comparison took the default version's masks from: the user's "
        "answer (reused) or a second inference (asked)",
        ("version", "source"),
    ),
}
"""The trial's series (Trial.metrics, by these keys), in the proxy's registry."""


class Trial:
    """The current rollout as this proxy carries it out."""

    def __init__(
        self,
        report_folder: Path,
        client: TorchServe,
        registry: CollectorRegistry,
    ) -> None:
        self.path = Path(report_folder) / REPORT_FILE_NAME
        self.client = client
        self._names: dict[str, list[str]] = {}
        """Each default version's class names (its model card), for a bare mask answer."""
        self.metrics = declare(registry, ROLLOUT_FAMILIES)
        registry.register(TrialCollector(self))
        self.shadows = ThreadPoolExecutor(SHADOW_THREADS, thread_name_prefix="shadow")
        self.queued = threading.BoundedSemaphore(SHADOW_QUEUE)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._rollout: Rollout | None = None
        """The report's rollout, decided or not."""
        self._counts = TrialCounts()
        self.aborted: str | None = None
        """Why this proxy's guard stopped the current trial; None while it runs here."""

    # -- what the state says ------------------------------------------------------------------
    def current(self) -> Rollout | None:
        """The rollout in the report while it takes uploads: no decision ended it and this
        proxy's guard did not stop it."""
        with self._lock:
            stamp = report_stamp(self.path)
            if stamp != self._stamp:
                self._stamp = stamp
                self._load()
            rollout = self._rollout
            if self.aborted or rollout is None or not rollout.active:
                return None
            return rollout

    def _load(self) -> None:
        report = ServingReport.read(self.path.parent)
        found = report.rollout if report is not None else None
        try:
            rollout = Rollout.from_dict(found) if found else None
        except ValueError as exc:  # safe default: the default version serves every upload
            log.error("serving report %s: unusable rollout (%s): no trial", self.path, exc)
            rollout = None
        before = self._rollout
        if (rollout and rollout.trial) != (before and before.trial):  # a new trial (or none)
            self.aborted = None
            self._counts = TrialCounts()
        if rollout != before:
            log.info("rollout now %s", json.dumps(found))
        self._rollout = rollout

    def pick(self) -> Rollout | None:
        """The rollout if this upload is one of its share, else None."""
        rollout = self.current()
        if rollout is not None and random.random() * 100 < rollout.percent:
            return rollout
        return None

    # -- the counts and the guard ---------------------------------------------------------------
    def candidate_answered(self, rollout: Rollout, ok: bool) -> None:
        self.metrics["candidate"].labels(
            rollout.version, rollout.mode, "ok" if ok else "failed"
        ).inc()
        with self._lock:
            if not self._counting(rollout):
                return
            self._counts.requests += 1
            self._counts.failed += not ok
            self._judge(rollout)

    def compared(self, rollout: Rollout, result: Comparison) -> None:
        with self._lock:
            if not self._counting(rollout):
                return
            counts = self._counts
            counts.compared += 1
            counts.agreement += result.agreement
            for name, iou in result.iou.items():
                counts.iou[name] = counts.iou.get(name, 0.0) + iou
                counts.classes[name] = counts.classes.get(name, 0) + 1
            self._judge(rollout)

    def _counting(self, rollout: Rollout) -> bool:
        """Whether an answer to ``rollout`` counts for the current trial (one that was on its
        way when the trial changed does not)."""
        return self._rollout is not None and rollout.trial == self._rollout.trial

    def figures(self) -> dict[str, Any] | None:
        """The trial as this proxy saw it since it began here (None: no rollout): the counts
        the decider sums, their means, and what ended it, if anything did."""
        self.current()
        with self._lock:
            rollout, counts = self._rollout, self._counts
            if rollout is None:
                return None
            decision = rollout.decision
            return {
                **rollout.trial.as_dict(),
                "decision": None if decision is None else asdict(decision),
                "stopped_here": self.aborted,
                "candidate_requests": counts.requests,
                "candidate_failures": counts.failed,
                "shadow_compared": counts.compared,
                **counts.means(),
                "counts": counts.as_dict(),
            }

    def _judge(self, rollout: Rollout) -> None:
        if self.aborted:
            return
        why = rollout.verdict(self._counts)
        if why is not None:
            self.aborted = why
            log.warning(
                "rollout of %s (%s %g%%) stopped by this proxy: %s; the fleet's decider "
                "(`petseg rollout watch`) or `petseg rollout abort` records it for every proxy",
                rollout.version,
                rollout.mode,
                rollout.percent,
                why,
            )

    # -- the shadow -----------------------------------------------------------------------------
    def shadow(self, rollout: Rollout, image: bytes, content_type: str, answered: Answered) -> None:
        """Compare the two versions on ``image`` in the background, if there is room;
        ``answered``: the default's answer the user got."""
        if not self.queued.acquire(blocking=False):
            self.metrics["shadows"].labels(rollout.version, "skipped").inc()
            return
        future = self.shadows.submit(self._compare, rollout, image, content_type, answered)
        future.add_done_callback(lambda _: self.queued.release())

    def _compare(
        self, rollout: Rollout, image: bytes, content_type: str, answered: Answered
    ) -> None:
        default = self._default_masks(rollout, image, content_type, answered)
        if default is None:
            self.metrics["shadows"].labels(rollout.version, "default_failed").inc()
            return
        candidate = self._rle(rollout, image, content_type, rollout.version)
        self.candidate_answered(rollout, candidate is not None)
        if candidate is None:
            self.metrics["shadows"].labels(rollout.version, "candidate_failed").inc()
            return
        try:
            result = compare(default, masks.from_rle(candidate))
        except (KeyError, TypeError, ValueError):
            self.metrics["shadows"].labels(rollout.version, "candidate_failed").inc()
            return
        metrics, version = self.metrics, rollout.version
        metrics["shadows"].labels(version, "compared").inc()
        metrics["agreement"].labels(version).observe(result.agreement)
        for name, iou in result.iou.items():
            metrics["iou"].labels(version, name).observe(iou)
        for served_by, share in zip(("default", "candidate"), result.foreground, strict=True):
            metrics["foreground"].labels(version, served_by).observe(share)
        self.compared(rollout, result)

    def _default_masks(
        self, rollout: Rollout, image: bytes, content_type: str, answered: Answered
    ) -> Segmentation | None:
        """The default's masks: read from the user's answer if it holds them, else asked for."""
        names = self._class_names(answered.version) if answered.output == "mask" else None
        reused = masks.from_answer(answered.output, answered.body, names)
        source = "asked" if reused is None else "reused"
        self.metrics["default_masks"].labels(rollout.version, source).inc()
        if reused is not None:
            return reused
        asked = self._rle(rollout, image, content_type, None)
        try:
            return None if asked is None else masks.from_rle(asked)
        except (KeyError, TypeError, ValueError):
            return None

    def _class_names(self, version: str | None) -> list[str] | None:
        """The class names of ``version`` (the one that answered), from its model card, once."""
        if version is None:
            return None
        if version not in self._names:
            try:
                card = self.client.model_card(version)
                self._names[version] = [c["name"] for c in card["classes"]]
            except (TorchServeError, KeyError, TypeError, ValueError):  # the next one tries again
                return None
        return self._names[version]

    def _rle(
        self, rollout: Rollout, image: bytes, content_type: str, version: str | None
    ) -> dict[str, Any] | None:
        """One version's RLE answer (timed), or None if it gave none."""
        started = time.perf_counter()
        try:
            response = self.client.predict(image, content_type, "rle", version)
            answer = response.json() if response.status_code == 200 else None
        except Exception:
            answer = None
        served_by = "default" if version is None else "candidate"
        seconds = time.perf_counter() - started
        self.metrics["latency"].labels(rollout.version, served_by).observe(seconds)
        return answer


def report_stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells a changed report apart: its inode (it is replaced whole, by a rename), its
    modification time and size (None: no file)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


@dataclass(frozen=True)
class Answered:
    """The default version's answer a shadowed user got: what the comparison may reuse."""

    output: str
    body: bytes
    version: str | None


class TrialCollector:
    """The trial as gauges at scrape time: its share per mode (0 once stopped, decided or here),
    and whether this proxy's guard stopped it while no decision is recorded: what a person must
    still record."""

    def __init__(self, trial: Trial) -> None:
        self.trial = trial

    def collect(self) -> Any:
        percent = GaugeMetricFamily(
            "petseg_rollout_percent",
            "Share of uploads the current rollout takes (0 series: none)",
            labels=["version", "mode"],
        )
        aborted = GaugeMetricFamily(
            "petseg_rollout_aborted",
            "1 when this proxy's guard stopped the current rollout and no decision is recorded",
            labels=["version"],
        )
        self.trial.current()
        rollout = self.trial._rollout
        if rollout is not None:
            guard = self.trial.aborted is not None and rollout.active
            taken = rollout.percent if rollout.active and not guard else 0
            percent.add_metric([rollout.version, rollout.mode], taken)
            aborted.add_metric([rollout.version], int(guard))
        yield percent
        yield aborted
