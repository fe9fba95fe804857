"""What a bulk run did: a progress bar as it goes, report.json and a summary at its end.

Every photo ends up counted once: segmented now, already done (a resumed run), failed (with
its reason) or not done (the run was stopped, or --limit left it out).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from torchserve_client.report import write_atomically

REPORT_NAME = "report.json"
SHOWN_FAILURES = 20
"""Failures printed at the end; report.json lists them all."""


@dataclass(frozen=True)
class Failure:
    path: str
    status: int | None
    """The HTTP status of the refusal; None when no answer came (unreadable file, no server)."""
    message: str

    def line(self) -> str:
        status = f"HTTP {self.status}: " if self.status is not None else ""
        return f"{self.path}: {status}{self.message}"


class Tally:
    """The counts of one run over ``total`` photos; ``details`` (target, folders) go into the
    report as they are."""

    def __init__(self, total: int, details: dict[str, Any]) -> None:
        self.total = total
        self.details = details
        self.segmented = 0
        self.skipped = 0
        self.failures: list[Failure] = []
        self.interrupted = False
        self.started = time.monotonic()
        self.seconds = 0.0
        self.bar = tqdm(total=total, unit="img", desc="segmenting", disable=None, smoothing=0.1)
        self.bar.set_postfix(failed=0)

    def done(self) -> None:
        self.segmented += 1
        self.bar.update()

    def already_done(self) -> None:
        self.skipped += 1
        self.bar.update()

    def failed(self, failure: Failure) -> None:
        self.failures.append(failure)
        self.bar.set_postfix(failed=len(self.failures), refresh=False)
        self.bar.update()

    def close(self) -> None:
        self.seconds = time.monotonic() - self.started
        self.bar.close()

    @property
    def not_done(self) -> int:
        return self.total - self.segmented - self.skipped - len(self.failures)

    @property
    def exit_status(self) -> int:
        """130 when stopped by Ctrl-C, 1 when a photo failed, else 0."""
        return 130 if self.interrupted else 1 if self.failures else 0

    def report(self) -> dict[str, Any]:
        return {
            **self.details,
            "photos": self.total,
            "segmented": self.segmented,
            "already_done": self.skipped,
            "failed": len(self.failures),
            "not_done": self.not_done,
            "interrupted": self.interrupted,
            "seconds": round(self.seconds, 2),
            "images_per_s": round(self.segmented / self.seconds, 2) if self.seconds else 0.0,
            "failures": [asdict(failure) for failure in self.failures],
        }

    def write(self, out_dir: Path) -> Path:
        path = out_dir / REPORT_NAME
        write_atomically(path, json.dumps(self.report(), indent=2) + "\n")
        return path

    def summary(self) -> str:
        report = self.report()
        return (
            f"{self.segmented} of {self.total} photos segmented in {report['seconds']} s "
            f"({report['images_per_s']} images/s); {self.skipped} already done, "
            f"{len(self.failures)} failed, {self.not_done} not done"
            + (" (stopped)" if self.interrupted else "")
        )

    def show_failures(self) -> None:
        for failure in self.failures[:SHOWN_FAILURES]:
            print(f"petseg: failed: {failure.line()}", file=sys.stderr)
        if len(self.failures) > SHOWN_FAILURES:
            more = len(self.failures) - SHOWN_FAILURES
            print(f"petseg: ... and {more} more in {REPORT_NAME}", file=sys.stderr)
