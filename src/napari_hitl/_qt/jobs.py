"""Run the core's progress generators in napari worker threads, one job at a time, cancellable."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QProgressBar

from napari_hitl.core.errors import Cancelled
from napari_hitl.core.progress import CancelToken, Progress


class JobRunner(QObject):
    """Runs one core job at a time in a ``thread_worker`` and reports to a progress bar.

    ``start(make_job, on_done)`` calls ``make_job(token)`` — a generator of
    :class:`~napari_hitl.core.progress.Progress` that returns a value — in a worker thread;
    ``on_done(value)`` runs on the GUI thread. ``cancel()`` sets the token; the job stops at its
    next step and ``cancelled`` is emitted. Errors become napari notifications. Whatever else the
    job yields (not a ``Progress``, not ``None``) is passed on by the ``update`` signal.
    """

    started = Signal(str)
    finished = Signal(str)  # the job's name, after success, error or cancel
    cancelled = Signal(str)
    failed = Signal(str, str)  # name, message
    update = Signal(object)  # anything else a job yields (a live round's result)

    def __init__(self, progress_bar: QProgressBar | None = None) -> None:
        super().__init__()
        self.progress_bar = progress_bar
        self.worker: Any = None
        self.name = ""
        self.token: CancelToken | None = None

    @property
    def busy(self) -> bool:
        """Whether a job is running."""
        return self.worker is not None

    def start(
        self,
        name: str,
        make_job: Callable[[CancelToken], Generator[Progress, None, Any]],
        on_done: Callable[[Any], None] | None = None,
    ) -> bool:
        """Start a job unless one is running; returns whether it started."""
        from napari.qt.threading import thread_worker

        if self.busy:
            return False
        token = CancelToken()

        def work() -> Generator[Progress, None, Any]:
            return (yield from make_job(token))

        # errors are ours to show (ignore_errors stops napari re-raising them in the event loop)
        worker = thread_worker(work, start_thread=False, ignore_errors=True)()
        self.worker, self.name, self.token = worker, name, token
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(lambda value: on_done(value) if on_done else None)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        if self.progress_bar is not None:
            self.progress_bar.setValue(0)
            self.progress_bar.setFormat(f"{name}…")
            self.progress_bar.setVisible(True)
        self.started.emit(name)
        worker.start()
        return True

    def cancel(self) -> None:
        """Ask the running job to stop at its next step."""
        if self.token is not None:
            self.token.cancel()

    def wait(self, timeout_ms: int = 30000) -> None:
        """Block until the job ends (for closing the widget; processes Qt events meanwhile)."""
        import time

        from qtpy.QtWidgets import QApplication

        deadline = time.monotonic() + timeout_ms / 1000
        while self.busy and time.monotonic() < deadline:
            QApplication.processEvents()
            time.sleep(0.01)

    def _on_progress(self, report: Any) -> None:
        if report is None:  # a heartbeat: lets napari's worker see a quit request
            return
        if not isinstance(report, Progress):
            self.update.emit(report)
            return
        if self.progress_bar is not None:
            self.progress_bar.setMaximum(max(report.total, 1))
            self.progress_bar.setValue(report.done)
            self.progress_bar.setFormat(report.message[:80] or f"{self.name} %p%")

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, Cancelled):
            self.cancelled.emit(self.name)
            return
        from napari.utils.notifications import show_error

        message = str(exc) or type(exc).__name__
        self.failed.emit(self.name, message)
        show_error(f"{self.name}: {message}")

    def _on_finished(self) -> None:
        name = self.name
        self.worker, self.token = None, None
        if self.progress_bar is not None:
            self.progress_bar.setFormat(f"{name}: done")
        self.finished.emit(name)
