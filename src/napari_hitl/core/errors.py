"""Typed exceptions whose messages tell the user what to do next."""

from __future__ import annotations


class HitlError(Exception):
    """Base class of every error napari-hitl raises on purpose."""


class InputFileError(HitlError, ValueError):
    """A source file cannot be used: unreadable, empty, wrong shape or dtype.

    The message always names the file and the problem.
    """

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class StoreError(HitlError):
    """The project store is missing, damaged, or an item in it does not exist."""


class SchemaVersionError(StoreError):
    """The store was written by a newer napari-hitl than the one reading it."""


class StaleDataError(StoreError):
    """A derived array no longer matches its source (the image or model changed)."""


class Cancelled(HitlError):
    """A long job stopped because its cancel token was set."""


class StoreBusyError(StoreError):
    """Another process is changing the project store; the message says what and which process."""


class StoreDamagedError(StoreError):
    """The store's labels, provenance or undo history disagree; ``napari-hitl check`` explains."""


def short_reason(exc: BaseException, limit: int = 160) -> str:
    """``exc`` as one short line: its type and its message with the whitespace collapsed."""
    text = " ".join(str(exc).split())
    if isinstance(exc, KeyError):
        text = f"missing key {text}"
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
