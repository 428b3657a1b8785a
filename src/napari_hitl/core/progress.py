"""Progress reports and cancel tokens shared by every long job.

Long work in the core is written as a generator that yields :class:`Progress` and checks a
:class:`CancelToken`; the GUI runs it in a napari ``thread_worker``, the CLI prints it, tests
iterate it. :func:`run_to_end` drives such a generator and returns its return value.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from napari_hitl.core.errors import Cancelled

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One progress report: ``done`` of ``total`` steps, with a short message."""

    done: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        """Completed fraction in [0, 1] (1 when ``total`` is 0)."""
        return 1.0 if self.total <= 0 else min(1.0, self.done / self.total)


class CancelToken:
    """A thread-safe flag that a long job polls between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the job to stop at its next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`Cancelled` if the token was set."""
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


Job = Generator[Progress, None, T]


def relay(
    job: Generator[Progress, None, Any], part: int, parts: int, prefix: str = ""
) -> Generator[Progress, None, Any]:
    """Re-yield a sub-job's progress as part ``part`` (0-based) of ``parts`` equal parts.

    Returns the sub-job's result, so ``result = yield from relay(job, 1, 3, "training")``.
    """
    while True:
        try:
            report = next(job)
        except StopIteration as stop:
            return stop.value
        yield Progress(
            part * report.total + report.done,
            parts * report.total,
            f"{prefix}: {report.message}" if prefix else report.message,
        )


def run_to_end(
    job: Generator[Progress, Any, T], on_progress: Callable[[Progress], None] | None = None
) -> T:
    """Drive a progress generator to completion and return its result.

    Parameters
    ----------
    job
        A generator that yields :class:`Progress` and returns a value.
    on_progress
        Called with every report (e.g. to print it), optional.

    Returns
    -------
    The generator's return value.
    """
    while True:
        try:
            report = next(job)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(report)
