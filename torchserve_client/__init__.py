"""The one TorchServe client: what the web proxy, the `petseg` command, the bench and the tests
use to reach a TorchServe serving petseg (keys, token renewal, inference, health, management).

It needs only the standard library and handler.protocol (standard library only too): never the
model code, so the web image carries no torch.
"""

from torchserve_client.client import Health, TorchServe, error_message
from torchserve_client.errors import KeyFileError, TorchServeError, Unreachable
from torchserve_client.keys import KeyFile
from torchserve_client.report import ServingReport
from torchserve_client.transport import Reply

__all__ = [
    "Health",
    "KeyFile",
    "KeyFileError",
    "Reply",
    "ServingReport",
    "TorchServe",
    "TorchServeError",
    "Unreachable",
    "error_message",
]
