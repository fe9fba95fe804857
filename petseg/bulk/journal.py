"""A bulk run's journal: one JSON line per photo done, appended as each one finishes.

It makes a run resumable and its COCO file rebuildable after a crash: a photo's record is
written once its outputs are on disk and flushed at once, so a killed run loses at most the
photos in flight (a torn last line is cut off when the journal is opened again). A photo done
again (it changed) gets a new record and the latest one counts; one that failed after being
done gets a line that forgets it. In memory the run keeps only an index (name -> digest and
where the record starts), never the records, whose RLE masks are most of their size.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, NamedTuple

JOURNAL_NAME = "journal.jsonl"


class Entry(NamedTuple):
    """What the index keeps of a photo's latest record: enough to tell whether it is done."""

    sha256: str
    offset: int
    overlay: bool
    polygons: float | None
    """The polygon tolerance its annotations were made with; None: RLE only."""
    annotated: bool
    """Whether it holds COCO annotations (a run without a COCO file makes none)."""


class Journal:
    """The journal in ``path``: continued when ``resume``, else started over."""

    def __init__(self, path: Path, resume: bool) -> None:
        self.path = Path(path)
        self.index: dict[str, Entry] = {}
        self._end = self._read() if resume and self.path.exists() else 0
        self._out = self.path.open("r+b" if self._end else "wb")
        self._out.truncate(self._end)
        self._out.seek(self._end)

    def _read(self) -> int:
        """Index every whole line; where the last whole line ends."""
        end = 0
        with self.path.open("rb") as lines:
            for line in lines:
                if not line.endswith(b"\n"):
                    break  # torn by a crash mid-write: cut off
                # a line that is no record (edited by hand?) is passed over: its photo is done again
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    self._note(json.loads(line), end)
                end += len(line)
        return end

    def _note(self, record: dict[str, Any], offset: int) -> None:
        name = record["file"]
        if record.get("forget"):
            self.index.pop(name, None)
            return
        polygons = None if record["polygons"] is None else float(record["polygons"])
        annotated = record.get("annotations") is not None
        self.index[name] = Entry(
            record["sha256"], offset, bool(record["overlay"]), polygons, annotated
        )

    def append(self, record: dict[str, Any]) -> None:
        """Add a record (``file``, ``sha256``, ``overlay``, ``polygons`` and the rest)."""
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        self._out.write(line)
        self._out.flush()
        self._note(record, self._end)
        self._end += len(line)

    def forget(self, name: str) -> None:
        """A photo done before is not done any more (it changed and now fails)."""
        if name in self.index:
            self.append({"file": name, "forget": True})

    def records(self, names: Collection[str]) -> Iterator[dict[str, Any]]:
        """The latest record of each of ``names`` that has one, by name: the same photos give
        the same order (and COCO ids) however the threads finished."""
        done = sorted(name for name in self.index if name in names)
        with self.path.open("rb") as lines:
            for name in done:
                lines.seek(self.index[name].offset)
                yield json.loads(lines.readline())

    def close(self) -> None:
        self._out.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
