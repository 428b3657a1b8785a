"""Keyboard shortcuts of the napari-hitl widgets, bound on the viewer while a widget is open.

napari's layers take the plain letters and digits (brush modes, label ids), so every shortcut here
uses Alt. The table is the single source for the bindings, the widgets' tooltips and the docs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: (key, what it does) — the loop widget's shortcuts
LOOP_SHORTCUTS: tuple[tuple[str, str], ...] = (
    ("Alt-T", "Train (Cancel while training)"),
    ("Alt-I", "Infer & filter the current image"),
    ("Alt-A", "Add predictions"),
    ("Alt-U", "Undo the last push"),
    ("Alt-L", "Live mode on / off"),
    ("Alt-1 … Alt-9", "paint with class 1 … 9 of the class list"),
)
#: (key, what it does) — the project widget's shortcuts
PROJECT_SHORTCUTS: tuple[tuple[str, str], ...] = (
    ("Alt-N", "next image"),
    ("Alt-P", "previous image"),
)
#: (key, what it does) — the active-learning widget's shortcuts
QUEUE_SHORTCUTS: tuple[tuple[str, str], ...] = (
    ("Alt-R", "rank the images / tiles"),
    ("Alt-J", "jump to the next item for the human"),
    ("Alt-Q", "next question: centre on the pixel the model is least sure of"),
    ("Alt-S", "skip the question"),
    ("Alt-1 … Alt-9", "answer the question with class 1 … 9 (only while one is asked)"),
)

#: (key, what it does) — the explain & guide widget's shortcuts
ATTENTION_SHORTCUTS: tuple[tuple[str, str], ...] = (
    ("Alt-E", "compute Grad-CAM and band attribution (segment under the cursor)"),
    ("Alt-G", "click mode on / off: left click = look here, right click = ignore"),
    ("Alt-K", "confirm this image's clicks"),
    ("Alt-X", "next candidate image"),
)

#: (key, what it does) — the Guide widget's shortcuts
GUIDE_SHORTCUTS: tuple[tuple[str, str], ...] = (
    ("Alt-B", "hint brush on / off (paints the chosen class on the hints layer)"),
    ("Alt-D", "apply: guide the network by the hints and the command"),
    ("Alt-O", "accept the guided prediction (threshold push)"),
)


def shortcut_tooltip(table: tuple[tuple[str, str], ...]) -> str:
    """An HTML table of shortcuts for a tooltip."""
    rows = "".join(f"<tr><td><b>{k}</b></td><td>{what}</td></tr>" for k, what in table)
    return f"<table>{rows}</table>"


def bind_shortcuts(viewer: Any, actions: dict[str, Callable[[], Any]]) -> Callable[[], None]:
    """Bind ``key → action`` on the viewer (overriding napari's); returns a function that unbinds.

    The actions take no argument (napari passes the viewer; it is dropped here).
    """
    bound = []
    for key, action in actions.items():
        viewer.bind_key(key, _drop_viewer(action), overwrite=True)
        bound.append(key)

    def unbind() -> None:
        for key in bound:
            viewer.bind_key(key, None, overwrite=True)

    return unbind


def _drop_viewer(action: Callable[[], Any]) -> Callable[[Any], None]:
    def handler(_viewer: Any) -> None:
        action()

    return handler
