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
