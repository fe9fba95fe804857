"""A stand-in for TorchServe's context, so tests drive the handler exactly as a worker does."""

from __future__ import annotations

from bench.pipeline import LocalContext


class FakeMetrics:
    """Keeps the last value of each metric, and every emission of the handler's own."""

    def __init__(self):
        self.recorded = {}
        self.emitted = []  # (name, type, value, dimension values, request id)

    def _add(self, name, value, *args, **kwargs):
        self.recorded[name] = value

    add_time = add_metric = add_counter = _add

    def get_metric(self, name, metric_type):
        metrics = self

        class Metric:
            def add_or_update(self, value, dimension_values=(), request_id=""):
                metrics.recorded[name] = value
                metrics.emitted.append(
                    (name, metric_type, value, list(dimension_values), request_id)
                )

        return Metric()


class FakeContext(LocalContext):
    """The bench's in-process context, keeping what the handler sets on it, with metrics that
    remember and TorchServe's kind of request ids."""

    def __init__(self, model_dir, batch_size=4, yaml=None):
        super().__init__(model_dir, {"batchSize": batch_size, **(yaml or {})})
        self.model_yaml_config = yaml or {}
        self.metrics = FakeMetrics()
        self.statuses, self.content_types, self.response_headers = {}, {}, {}

    def get_request_id(self, idx=0):
        return f"torchserve-{idx}"

    def set_response_header(self, idx, key, value):
        self.response_headers.setdefault(idx, {})[key] = value

    def set_response_status(self, code=200, phrase="", idx=0):
        self.statuses[idx] = (code, phrase)

    def set_response_content_type(self, idx, value):
        self.content_types[idx] = value


def run(handler, rows, tiny_export, headers=None):
    context = FakeContext(tiny_export)
    context.headers = headers or {}
    return handler.handle(rows, context), context
