"""What every napari-hitl dock widget shares: the shown project image as context, errors said
once (status line and napari notification), and a clean close (shortcuts released, the running
job cancelled and waited for)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QWidget

from napari_hitl._napari.shortcuts import bind_shortcuts, shortcut_tooltip
from napari_hitl._napari.view import shown_project_image

if TYPE_CHECKING:
    from collections.abc import Iterable

    from napari_hitl._qt.jobs import JobRunner
    from napari_hitl.core.store import ProjectStore
    from napari_hitl.core.store.classes import ClassInfo

JOB_WAIT_MS = 10000  # how long closing waits for a cancelled job to stop


class DockWidget(QWidget):
    """Base of the dock widgets. Subclasses set ``viewer``, ``status`` (a label), ``jobs`` (a
    :class:`~napari_hitl._qt.jobs.JobRunner`) and ``_unbind`` (what releases their shortcuts),
    and put extra cleanup in :meth:`release`."""

    viewer: Any
    status: Any
    jobs: JobRunner
    _unbind: Callable[[], None]

    def context(self) -> tuple[ProjectStore, str | None, Any]:
        """(store, image, labels layer) of the shown project image.

        Raises
        ------
        HitlError
            No image of a project store is open.
        """
        return shown_project_image(self.viewer)

    def connect_jobs(self, actions: dict[str, Callable[[], Any]], shortcuts: Any) -> None:
        """Finish setting up: the job runner drives :meth:`_set_busy`, ``actions`` are bound to
        their keys (released on close) and ``shortcuts`` (the table of
        :mod:`napari_hitl._napari.shortcuts`) become the widget's tooltip."""
        self.jobs.started.connect(lambda _n: self._set_busy(True))
        self.jobs.finished.connect(lambda _n: self._set_busy(False))
        self._unbind = bind_shortcuts(self.viewer, actions)
        self.setToolTip("Shortcuts" + shortcut_tooltip(shortcuts))
        self._set_busy(False)

    def _set_busy(self, busy: bool) -> None:
        """Enable or disable the buttons while a job runs (override)."""

    def show_error(self, exc: BaseException) -> None:
        """Say what went wrong in the status line and as a napari notification."""
        from napari.utils.notifications import show_error as notify_error

        self.status.setText(str(exc))
        notify_error(str(exc))

    def release(self) -> None:
        """What a widget gives back on close besides its shortcuts and job (override)."""

    def shutdown(self) -> None:
        """Release what the widget holds, its shortcuts, and stop a running job."""
        self.release()
        self._unbind()
        self._unbind = lambda: None
        self.jobs.cancel()
        self.jobs.wait(JOB_WAIT_MS)

    def closeEvent(self, event: Any) -> None:
        """Closing the widget cancels its job and releases its keys."""
        self.shutdown()
        super().closeEvent(event)


def fill_class_combo(combo: Any, classes: Iterable[ClassInfo]) -> None:
    """Put the project's class names in ``combo`` (each with its label value as item data),
    keeping the chosen name, without emitting change signals."""
    current = combo.currentText()
    combo.blockSignals(True)
    combo.clear()
    for c in classes:
        combo.addItem(c.name, c.value)
    if current:
        combo.setCurrentText(current)
    combo.blockSignals(False)
