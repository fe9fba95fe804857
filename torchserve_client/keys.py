"""TorchServe's key file, and renewing a key that TorchServe no longer accepts.

TorchServe 0.12 writes random keys into ``key_file.json`` where it starts and rewrites the file
when a key is rotated; keys expire after ``token_expiration_min``. Keys are therefore read from
the file at each use, never cached.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

from torchserve_client.errors import KeyFileError


class KeyFile:
    """The keys of one TorchServe, read on demand from its key_file.json."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._renewing = threading.Lock()

    def keys(self) -> dict[str, str]:
        """{'inference', 'management', 'API'} -> key, as the file holds them now."""
        try:
            data = json.loads(self.path.read_text())
            return {name: entry["key"] for name, entry in data.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeyFileError(
                f"TorchServe's key file {self.path} is not readable; is TorchServe running?"
            ) from exc

    def key(self, kind: str) -> str:
        return self.keys()[kind]

    def renewed(self, kind: str, failed: str, rotate: Callable[[], object]) -> str:
        """A key of ``kind`` other than ``failed``: from the file if someone rotated it, else
        from ``rotate()`` (a call to the token API, which rewrites the file).

        One thread renews at a time, so a burst of requests holding the same stale key asks
        TorchServe for one new key, not one each.
        """
        with self._renewing:
            current = self.key(kind)
            if current != failed:
                return current
            rotate()
            return self.key(kind)
