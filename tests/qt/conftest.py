"""What the widget tests share: a viewer with a project open and a dock widget added, and
waiting for a widget's job to finish."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

JOB_TIMEOUT_MS = 120_000


@pytest.fixture
def open_dock(make_napari_viewer) -> Callable[..., tuple[Any, Any]]:
    """``open_dock(store, "Learning loop", show=False)`` → ``(viewer, widget)``: a new viewer
    with ``store`` opened in the Project widget and the named napari-hitl dock widget added."""

    def open_(store: Any, widget: str, show: bool = False, viewer: Any = None) -> tuple[Any, Any]:
        viewer = viewer or make_napari_viewer(show=show)
        _dock, project = viewer.window.add_plugin_dock_widget("napari-hitl", "Project")
        project.open_store(store.path)
        _dock, dock = viewer.window.add_plugin_dock_widget("napari-hitl", widget)
        return viewer, dock

    return open_


@pytest.fixture
def wait_idle(qtbot) -> Callable[[Any], None]:
    """``wait_idle(widget)``: wait until the widget's job runner is idle (2 min at most)."""

    def wait(widget: Any) -> None:
        qtbot.waitUntil(lambda: not widget.jobs.busy, timeout=JOB_TIMEOUT_MS)

    return wait
