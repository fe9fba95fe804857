"""What can go wrong between a client and TorchServe, as exceptions with a one-line message."""

from __future__ import annotations


class TorchServeError(Exception):
    """TorchServe refused a call or could not be asked; ``status`` is its HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class Unreachable(TorchServeError):
    """No answer: nothing listens there, the connection broke, or the answer took too long."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class KeyFileError(TorchServeError):
    """The key file is missing or unreadable: TorchServe is not running (or not from there)."""
