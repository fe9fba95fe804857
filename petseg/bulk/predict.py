"""`petseg predict` over many photos: files, folders and globs in; masks, overlays, a COCO file
and a report out.

    petseg predict photos/ --out-dir labels/ [--overlay] [--coco labels/coco.json] [--resume]

Photos go to one target (petseg.bulk.targets: --workdir's TorchServe, or the web API at --url) from
--concurrency threads sharing one client, one request per photo: the mask PNG alone, or with
--overlay the JSON answer, which carries mask and overlay together. Each thread reads its photo,
sends it, writes its outputs, makes its COCO annotations (with --coco) and journals them;
nothing of a photo outlives its own thread's work, so the client's memory stays flat however
many photos there are. A photo that cannot be read or that the server refuses is named in the
report and the run goes on. Ctrl-C stops sending, lets the requests in flight finish (a second
one abandons them), writes what is done and exits 130; `--resume` completes the run.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import hashlib
import io
import mimetypes
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image
from tqdm import tqdm

from handler.protocol import DEFAULT_OUTPUT, parse_tolerance
from petseg.bulk import coco
from petseg.bulk.journal import JOURNAL_NAME, Journal
from petseg.bulk.photos import Collection, Photo, collect
from petseg.bulk.tally import REPORT_NAME, Failure, Tally
from petseg.bulk.targets import Direct, Target, WebApi
from petseg.serving.launcher import Instance
from torchserve_client import Reply, TorchServeError, Unreachable, error_message

RETRYABLE = frozenset({500, 502, 503, 504, 507})
"""TorchServe's overload (503) and worker restarts (500, 507), a balancer's 502 and 504: they
pass within seconds, so the photo is sent again before it counts as failed."""
PAUSES_S = (1.0, 2.0)
"""Before each further try of a photo (no answer at all counts as transient too)."""
COCO_EVERY_S = 60.0
"""The COCO file is rewritten this often during a run (a crash leaves a recent one) ..."""
COCO_SHARE = 20
"""... or after this many times the last rewrite's duration, if longer: rewriting a large
journal never takes more than a twentieth of the run."""
SKIPPED = "skipped"


@dataclass(frozen=True)
class Options:
    """A run's options, as `petseg predict` parsed them (its defaults are the command's)."""

    out_dir: Path
    overlay: bool
    coco: Path | None
    tolerance: float | None
    """Polygons in the COCO file, simplified by this many pixels; None: RLE."""
    concurrency: int
    """Photos in flight: enough to keep the server's batches full, with the next ones queued."""
    resume: bool
    limit: int | None
    """Only the first photos by name (a trial run, which --resume continues)."""
    scored: bool = False
    """Keep each photo's confidence (a pre-annotation's score: the labels answer carries it)."""

    @property
    def output(self) -> str:
        """The answer asked for: JSON (mask and overlay in one answer) only when the overlay is
        wanted; otherwise the server paints and encodes no overlay: with a COCO file of RLE the
        mask and its classes' RLE (the server has the label map, the client would decode the
        PNG to make them), else the mask PNG alone."""
        if self.overlay:
            return "json"
        rle = self.coco is not None and self.tolerance is None
        return "labels" if rle or self.scored else "mask"


class Extra(Protocol):
    """Another file made from the run's journal, beside the COCO file (e.g. Label Studio's
    tasks, petseg.labelling.tasks_file): told the model first, to refuse a misuse before any
    photo is sent, then handed the finished run."""

    scored: bool
    """It needs each photo's confidence."""

    def start(self, card: dict[str, Any]) -> None: ...

    def finish(self, run: BulkRun) -> str:
        """Write the file; the line that says where."""
        ...


def command(args: argparse.Namespace, instance: Instance, extra: Extra | None = None) -> int:
    """The bulk `petseg predict`: 0 when every photo was segmented, 1 when some failed, 130
    when stopped by Ctrl-C (usage errors raise ValueError: exit 2)."""
    options = options_from(args, scored=extra is not None and extra.scored)
    collection = collect(args.images, options.out_dir)
    if args.url:
        target: Target = WebApi(args.url, args.timeout)
    else:
        target = Direct(instance.client(timeout=args.timeout))
    card = target.model_card()
    if extra is not None:
        extra.start(card)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    if options.coco is not None:
        options.coco.parent.mkdir(parents=True, exist_ok=True)
    bulk_run = BulkRun(target, card, collection, options)
    tally = bulk_run.run()
    print(tally.summary())
    print(f"masks in {options.out_dir}, report {options.out_dir / REPORT_NAME}")
    if options.coco is not None:
        print(f"COCO file {options.coco}")
    if extra is not None:
        print(extra.finish(bulk_run))
    tally.show_failures()
    return tally.exit_status


def options_from(args: argparse.Namespace, scored: bool = False) -> Options:
    """The run's options, or a ValueError naming the misuse."""
    if not args.out_dir:
        raise ValueError("several photos, a folder or a glob need --out-dir DIR for the masks")
    if args.out or args.output != DEFAULT_OUTPUT:
        raise ValueError("-o and --output are for one photo; a bulk run writes into --out-dir")
    if args.instances:
        raise ValueError("--instances is for one photo; send many to a balancer with --url")
    if args.coco_polygons and not args.coco:
        raise ValueError("--coco-polygons needs --coco FILE")
    if args.concurrency < 1 or (args.limit is not None and args.limit < 1):
        raise ValueError("--concurrency and --limit take a number from 1")
    tolerance = parse_tolerance(str(args.tolerance)) if args.coco_polygons else None
    return Options(
        out_dir=args.out_dir,
        overlay=args.overlay,
        coco=args.coco,
        tolerance=tolerance,
        concurrency=args.concurrency,
        resume=args.resume,
        limit=args.limit,
        scored=scored,
    )


class BulkRun:
    """One run: what a thread does with each photo (``work``) and the bookkeeping after it
    (``take``, under the lock), with the journal, the tally and the COCO file they keep."""

    def __init__(
        self, target: Target, card: dict[str, Any], collection: Collection, options: Options
    ) -> None:
        self.target = target
        self.card = card
        self.options = options
        self.class_ids = [c["id"] for c in coco.categories(card)]
        self.photos = collection.photos[: options.limit]
        self.names = {photo.name for photo in collection.photos}
        self.journal = Journal(options.out_dir / JOURNAL_NAME, options.resume)
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        """Held to take the next photo, and for the bookkeeping of one done."""
        self.writing = threading.Lock()
        self.folders: set[Path] = set()
        """Output folders made so far: one mkdir per folder, not per photo."""
        self.closed = False
        self.error: BaseException | None = None
        details = {
            "target": target.where,
            "root": str(collection.root),
            "out_dir": str(options.out_dir),
            "coco": None if options.coco is None else str(options.coco),
            "ignored": collection.ignored,
        }
        self.tally = Tally(len(collection.photos) + len(collection.clashes), details)
        for photo, owner in collection.clashes:
            message = f"its outputs would overwrite those of {owner.name}: rename one"
            self.tally.failed(Failure(str(photo.path), None, message))
        self.next_coco = time.monotonic() + COCO_EVERY_S

    def run(self) -> Tally:
        """Segment the photos; whatever happens, close the journal and write the COCO file and
        the report with what is done."""
        photos = iter(self.photos)
        threads = [
            threading.Thread(target=self._segment, args=(photos,), name="segment", daemon=True)
            for _ in range(self.options.concurrency)
        ]
        try:
            with stop_on_interrupt(self.stop):
                for thread in threads:
                    thread.start()
                with contextlib.suppress(KeyboardInterrupt):  # the second Ctrl-C: abandon
                    for thread in threads:
                        thread.join()
        finally:
            with self.lock:  # from here on the threads' outcomes are dropped
                self.closed = True
                self.journal.close()
                self.tally.close()
                self._write_coco()
                self.tally.write(self.options.out_dir)
        if self.error is not None:
            raise self.error
        return self.tally

    def stop(self) -> None:
        """Ctrl-C: send nothing more; what is in flight finishes and is kept."""
        self.tally.interrupted = True
        self.stopping.set()

    def _segment(self, photos: Iterator[Photo]) -> None:
        """One thread's loop: take the next photo, do its work, then its bookkeeping under the
        lock. The threads hand nothing to each other: no queue, no wake-up per photo (a pool
        fed photo by photo spent nearly half the client's Python time passing them around)."""
        try:
            while not self.stopping.is_set():
                with self.lock:
                    photo = next(photos, None)
                if photo is None:
                    return
                outcome = self.work(photo)
                with self.lock:
                    if self.closed:
                        return
                    self.take(photo, outcome)
                    self._checkpoint()
        except BaseException as exc:  # raised by run(), once the others have stopped too
            self.error = exc
            self.stopping.set()

    def take(self, photo: Photo, outcome: dict[str, Any] | Failure | str) -> None:
        """Journal, count and, for a failure, remove what an earlier run wrote for it."""
        if isinstance(outcome, dict):
            self.journal.append(outcome)
            self.tally.done()
        elif isinstance(outcome, Failure):
            photo.mask(self.options.out_dir).unlink(missing_ok=True)
            photo.overlay(self.options.out_dir).unlink(missing_ok=True)
            self.journal.forget(photo.name)
            self.tally.failed(outcome)
        else:
            self.tally.already_done()

    def _checkpoint(self) -> None:
        """Rewrite the COCO file when it is due (see COCO_EVERY_S)."""
        if self.options.coco is None or time.monotonic() < self.next_coco:
            return
        started = time.monotonic()
        self._write_coco()
        took = time.monotonic() - started
        self.next_coco = time.monotonic() + max(COCO_EVERY_S, COCO_SHARE * took)

    def _write_coco(self) -> None:
        if self.options.coco is not None:
            polygons = self.options.tolerance is not None
            coco.write(self.options.coco, self._annotated, self.card, polygons)

    def _annotated(self) -> Iterator[dict[str, Any]]:
        """The latest records of the run's photos that carry annotations: one done by a run
        without a COCO file has none until it is done again."""
        records = self.journal.records(self.names)
        return (record for record in records if record["annotations"] is not None)

    # -- one photo --------------------------------------------------------------------------------
    def work(self, photo: Photo) -> dict[str, Any] | Failure | str:
        """A photo's journal record once its outputs are written, its Failure, or SKIPPED when
        a resumed run finds it done."""
        try:
            data = photo.path.read_bytes()
        except OSError as exc:
            return Failure(str(photo.path), None, f"cannot read it: {exc.strerror or exc}")
        digest = hashlib.sha256(data).hexdigest()
        if self.options.resume and self._done_before(photo, digest):
            return SKIPPED
        try:
            reply = self._send(data, content_type(photo.path.suffix))
            if reply.status_code != 200:
                return Failure(str(photo.path), reply.status_code, error_message(reply))
            return self._save(photo, digest, reply)
        except (TorchServeError, OSError, ValueError) as exc:
            return Failure(str(photo.path), getattr(exc, "status", None), str(exc))

    def _done_before(self, photo: Photo, digest: str) -> bool:
        """Journalled with this very content, in the forms asked for, its outputs present."""
        entry = self.journal.index.get(photo.name)
        out_dir, options = self.options.out_dir, self.options
        if entry is None or entry.sha256 != digest or not photo.mask(out_dir).is_file():
            return False
        if options.overlay and not (entry.overlay and photo.overlay(out_dir).is_file()):
            return False
        if options.coco is not None and not entry.annotated:
            return False
        return options.tolerance is None or entry.polygons == options.tolerance

    def _send(self, data: bytes, content_type: str | None) -> Reply:
        """The answer, asked again after a pause while the failure is transient."""
        pauses = list(PAUSES_S)
        while True:
            try:
                reply = self.target.segment(data, content_type, self.options.output)
            except Unreachable as exc:
                if exc.timed_out or not self._pause(pauses):
                    raise
                continue
            if reply.status_code not in RETRYABLE or not self._pause(pauses):
                return reply

    def _pause(self, pauses: list[float]) -> bool:
        """Wait before trying again; False when no try is left or the run is stopping."""
        return bool(pauses) and not self.stopping.wait(pauses.pop(0))

    def _write(self, path: Path, data: bytes) -> None:
        """Write an output, making its folder the first time (mirroring the input tree); one
        thread at a time: 16 threads creating files in one folder at once spent twice the
        kernel time per file (the folder's lock), on the cores TorchServe needs."""
        with self.writing:
            if path.parent not in self.folders:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.folders.add(path.parent)
            path.write_bytes(data)

    def _save(self, photo: Photo, digest: str, reply: Reply) -> dict[str, Any]:
        """Write the photo's outputs; its journal record, with its COCO annotations when the run
        makes a COCO file: the server's RLE when it sent them, else made from the mask (decoding
        a 12 MP mask PNG costs the client ~14 ms of CPU, on the cores a local server needs)."""
        output = self.options.output
        answer = reply.content if output == "mask" else reply.json()
        mask, overlay = answer_images(answer, output)
        labels = Image.open(io.BytesIO(mask))  # the header only, until its pixels are read
        if labels.mode != "P":
            raise ValueError(f"the answer's mask is a {labels.mode} image, not a class map")
        self._write(photo.mask(self.options.out_dir), mask)
        if overlay is not None:
            self._write(photo.overlay(self.options.out_dir), overlay)
        tolerance = self.options.tolerance
        record = {
            "file": photo.name,
            "sha256": digest,
            "width": labels.width,
            "height": labels.height,
            "overlay": overlay is not None,
            "polygons": tolerance,
            "annotations": None,
        }
        if self.options.scored:
            record["confidence"] = answer.get("confidence")
        if self.options.coco is not None and output == "labels" and tolerance is None:
            record["annotations"] = coco.served_annotations(answer, self.class_ids)
        elif self.options.coco is not None:
            found = coco.annotations(np.asarray(labels), self.class_ids, tolerance)
            record["annotations"] = found
        return record


@functools.cache
def content_type(suffix: str) -> str | None:
    """The media type a photo is sent as, by its suffix: looked up once per suffix (per photo,
    mimetypes took 3% of the client's Python time)."""
    return mimetypes.guess_type(f"photo{suffix}")[0]


def answer_images(answer: bytes | dict[str, Any], output: str) -> tuple[bytes, bytes | None]:
    """(mask PNG, overlay JPEG or None) from an answer in the ``output`` form: the PNG itself,
    or the JSON of the others."""
    if output == "mask":
        return answer, None
    try:
        mask = base64.b64decode(answer["mask_png"])
        return mask, base64.b64decode(answer["overlay_jpeg"]) if output == "json" else None
    except (KeyError, TypeError) as exc:
        raise ValueError(f"the answer holds no mask and overlay: {exc!r}") from exc


@contextlib.contextmanager
def stop_on_interrupt(stop: Callable[[], None]) -> Iterator[None]:
    """The first Ctrl-C calls ``stop``; a second one interrupts at once (KeyboardInterrupt)."""

    def interrupted(signum: int, frame: object) -> None:
        stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        message = "stopping: the photos in flight finish first (Ctrl-C again: abandon them)"
        tqdm.write(message, file=sys.stderr)

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
