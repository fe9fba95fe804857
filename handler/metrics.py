"""The handler's metrics, as TorchServe exports them on its metrics port (``:8082/metrics``).

TorchServe 0.12 exports a handler metric only when config/metrics.yaml declares it, with the
type, unit and dimensions that ``DECLARED`` lists (a test holds the two equal); the worker
checks the dimension values against the file and drops a line that does not fit. Dimensions
become Prometheus labels: every metric names the model and its version, so a new version's
figures stand apart from the old one's. Histograms have the fixed buckets of TorchServe's
Prometheus client (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10),
which is why the mask figures are fractions and uncertainty is reported rather than confidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ts.metrics.metric_type_enum import MetricTypes

from handler.batch import Batch

DIMENSIONS = ("ModelName", "ModelVersion", "Level")
CLASS_DIMENSIONS = (*DIMENSIONS, "Class")
LEVEL = "Model"

BATCH_SIZE = "PetsegBatchSize"
REJECTED = "PetsegRejectedRequests"
STAGE_TIMES = {
    "preprocess": "PetsegPreprocessTime",
    "inference": "PetsegInferenceTime",
    "postprocess": "PetsegPostprocessTime",
}
FOREGROUND = "PetsegForegroundFraction"
UNCERTAINTY = "PetsegMaskUncertainty"
EMPTY_MASKS = "PetsegEmptyMasks"
CLASS_PRESENT = "PetsegClassPresent"

DECLARED: dict[str, tuple[MetricTypes, str, tuple[str, ...]]] = {
    # name: (type, unit, dimensions), as config/metrics.yaml must declare them
    BATCH_SIZE: (MetricTypes.HISTOGRAM, "count", DIMENSIONS),
    REJECTED: (MetricTypes.COUNTER, "count", DIMENSIONS),
    **{name: (MetricTypes.GAUGE, "ms", DIMENSIONS) for name in STAGE_TIMES.values()},
    FOREGROUND: (MetricTypes.HISTOGRAM, "fraction", DIMENSIONS),
    UNCERTAINTY: (MetricTypes.HISTOGRAM, "fraction", DIMENSIONS),
    EMPTY_MASKS: (MetricTypes.COUNTER, "count", DIMENSIONS),
    CLASS_PRESENT: (MetricTypes.COUNTER, "count", CLASS_DIMENSIONS),
}
"""Requests per batch (a histogram: its mean is sum/count); bad uploads; the mean time of each
stage per request of the batch (last value); per mask: the pet's share of the photo, 1 - the
mean confidence, empty masks and, per class, masks that contain it."""


def record(
    metrics: Any, batch: Batch, model: str, version: str, class_names: Sequence[str]
) -> None:
    """Emit one batch's metrics through TorchServe's metrics cache (``context.metrics``).

    Per-mask histograms carry the request's id, so TorchServe's metrics log ties each value
    to an upload; counters are emitted for every batch, zero included, so that rates exist
    from the first batch on.
    """

    def emit(name: str, value: float, *extra: str, request_id: str = "") -> None:
        kind = DECLARED[name][0]
        dims = [model, version, LEVEL, *extra]
        metrics.get_metric(name, kind).add_or_update(value, dims, request_id)

    good = [item for item in batch.items if item.error is None]
    emit(BATCH_SIZE, len(batch.items))
    emit(REJECTED, len(batch.items) - len(good))
    if not good:
        return
    for stage, name in STAGE_TIMES.items():
        emit(name, round(sum(item.timings[stage] for item in good) / len(good), 2))
    for item in good:
        emit(FOREGROUND, round(item.quality.foreground_fraction, 6), request_id=item.request_id)
        emit(UNCERTAINTY, round(item.quality.uncertainty, 6), request_id=item.request_id)
    emit(EMPTY_MASKS, sum(item.quality.foreground_fraction == 0 for item in good))
    for class_id, name in enumerate(class_names[1:], start=1):
        emit(CLASS_PRESENT, sum(class_id in item.quality.classes_present for item in good), name)
