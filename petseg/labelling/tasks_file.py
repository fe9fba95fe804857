"""`petseg predict PHOTOS --out-dir DIR --label-studio tasks.json`: the run's photos as Label
Studio tasks with their pre-annotations, for the project's Import.

Each task names its photo by URL, ``--label-studio-images PREFIX`` + its name under the input
folder (default ``/data/local-files/?d=``: Label Studio serving the photos' folder as local
files, LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT), and carries one prediction: the regions
petseg.labelling.regions makes for the ML backend, from the masks the run wrote, with the
model's confidence and version. The regions fit the project's labelling config
(``--label-config FILE``; default: `petseg label-studio config`'s). The file is written from
the journal, atomically, after the run: an interrupted run's file holds the photos it finished.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from PIL import Image

from petseg.bulk.photos import Photo
from petseg.bulk.predict import BulkRun
from petseg.labelling import label_config, regions
from torchserve_client.report import replacing

DEFAULT_IMAGES = "/data/local-files/?d="


@dataclass
class TasksFile:
    path: Path
    images: str = DEFAULT_IMAGES
    config: str | None = None
    """The project's labelling config (XML); None: the template for the model's classes."""
    tolerance: float = regions.DEFAULT_TOLERANCE
    scored: bool = True
    project: label_config.Project | None = field(default=None, init=False)

    def start(self, card: dict[str, Any]) -> None:
        config = self.config or label_config.template(card["classes"])
        self.project = label_config.read(config, card["classes"])
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def finish(self, run: BulkRun) -> str:
        assert self.project is not None, "start() reads the config first"
        records = run.journal.records(run.names)
        count = write(self.path, self.tasks(records, run.options.out_dir, run.card["version"]))
        return f"Label Studio tasks {self.path} ({count} photos)"

    def tasks(
        self, records: Iterator[dict[str, Any]], out_dir: Path, version: str
    ) -> Iterator[dict[str, Any]]:
        for record in records:
            name = record["file"]
            with Image.open(Photo(out_dir / name, name).mask(out_dir)) as mask:
                labels = np.asarray(mask)
            prediction = {
                "model_version": version,
                "score": record.get("confidence"),
                "result": regions.results(labels, self.project, self.tolerance),
            }
            image = self.images + quote(name)
            yield {"data": {self.project.image_key: image}, "predictions": [prediction]}


def write(path: Path, tasks: Iterator[dict[str, Any]]) -> int:
    """A JSON list, one task a line, streamed: no run is held in memory; how many."""
    count = 0
    with replacing(path) as out:
        out.write("[")
        for count, task in enumerate(tasks, 1):
            out.write(("\n" if count == 1 else ",\n") + json.dumps(task))
        out.write("\n]\n")
    return count
