"""How a TorchServe worker runs the pipeline's forward pass fast on its machine: the one place
for the speed machinery around the model, so handler/pipeline.py stays the plain pipeline.

- Precision and layout: handler/model.py ``ServingModel`` (bf16 weights on CPUs with native
  bf16, fp16 autocast on CUDA, batch norms folded, channels-last).
- Threads: each batch gets the threads of handler/threads.py's plan, its share of the cores
  among the workers alive on the machine, every usable core for a request alone on an idle
  machine (``lone_request_every_core``), seen idle through the other workers' busy locks.

Each has its switch in config/model-config.yaml and its ablation row in `make bench`
(bench/ablation.py); docs/performance.md has the figures, and those of the mechanisms that
were measured not to pay and removed.
"""

from __future__ import annotations

import contextlib

import torch

from handler.model import ServingModel
from handler.settings import HandlerConfig
from handler.threads import BusyWorkers, ThreadPlan


class WorkerRuntime:
    """The served model's forward pass, scheduled on this worker's share of the machine."""

    def __init__(self, model: ServingModel, config: HandlerConfig) -> None:
        self.model = model
        self.device = model.device
        self.on_cpu = self.device.type == "cpu"
        self.threads = ThreadPlan.for_worker(config.threads, config.lone_request_every_core)
        self.workers = BusyWorkers()
        if self.on_cpu:
            torch.set_num_threads(self.threads.shared(self.workers.alive()))

    @property
    def precision(self) -> str:
        return self.model.precision

    def warm_up(self, input_size: int, batch_size: int) -> None:
        """The first forward pass at each batch size and thread count is several times slower
        (allocations, kernel choice): done at start-up, not on a user's request."""
        for n in sorted({1, batch_size}):
            self.model(torch.zeros(n, 3, input_size, input_size, device=self.device))
        if self.on_cpu and self.threads.lone_may_gain(self.workers.alive()):
            shared = torch.get_num_threads()
            with self.workers.alone():
                torch.set_num_threads(self.threads.cores)
                self.model(torch.zeros(1, 3, input_size, input_size, device=self.device))
                torch.set_num_threads(shared)

    def close(self) -> None:
        """No longer a worker the others count (bench/pipeline.py ``released``)."""
        self.workers.close()

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Around one batch: this worker marked busy for the others' thread plans."""
        return self.workers.busy()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Logits of a batch, with the threads the plan gives a batch of its size now."""
        if self.on_cpu:
            requests, workers = len(pixels), self.workers.alive()
            # the other workers' locks matter only to a lone request that may take their cores
            lone_may_gain = requests == 1 and self.threads.lone_may_gain(workers)
            others = self.workers.others_busy() if lone_may_gain else 0
            torch.set_num_threads(self.threads.threads(requests, workers, others))
        logits = self.model(pixels.to(self.device))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return logits
