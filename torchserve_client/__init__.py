"""The one TorchServe client: what the web proxy, the `petseg` command, the bench and the tests
use to reach a TorchServe serving petseg (keys, token renewal, inference, health, management).

It depends on `requests` and on handler.protocol (standard library only), never on the model
code, so the web image carries no torch.
"""

from torchserve_client.client import Health, TorchServe, error_message
from torchserve_client.errors import KeyFileError, TorchServeError, Unreachable
from torchserve_client.keys import KeyFile

__all__ = [
    "Health",
    "KeyFile",
    "KeyFileError",
    "TorchServe",
    "TorchServeError",
    "Unreachable",
    "error_message",
]
