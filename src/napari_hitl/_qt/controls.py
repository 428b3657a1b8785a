"""Small builders for the dock widgets' controls: a button or a choice with its tooltip in one
call, and a row of widgets, so the widgets' constructors read as a list of what they show."""

from __future__ import annotations

from collections.abc import Iterable

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLayout,
    QProgressBar,
    QPushButton,
    QWidget,
)


def button(text: str, tip: str = "", checkable: bool = False) -> QPushButton:
    """A push button with its tooltip (``checkable``: a toggle)."""
    b = QPushButton(text)
    if tip:
        b.setToolTip(tip)
    b.setCheckable(checkable)
    return b


def combo(items: Iterable[str], tip: str = "", current: str | None = None) -> QComboBox:
    """A drop-down choice of ``items`` with its tooltip, ``current`` chosen."""
    c = QComboBox()
    c.addItems(list(items))
    if tip:
        c.setToolTip(tip)
    if current is not None:
        c.setCurrentText(current)
    return c


def hrow(*parts: QWidget | QLayout, stretch: dict[int, int] | None = None) -> QHBoxLayout:
    """A row of widgets and layouts, left to right (``stretch``: part index → stretch factor)."""
    row = QHBoxLayout()
    for i, part in enumerate(parts):
        factor = (stretch or {}).get(i, 0)
        if isinstance(part, QLayout):
            row.addLayout(part, factor)
        else:
            row.addWidget(part, factor)
    return row


def label(text: str = "", plain: bool = False) -> QLabel:
    """A word-wrapped label (``plain``: shown as typed, never as markup — for messages that
    hold class or image names)."""
    lab = QLabel(text)
    lab.setWordWrap(True)
    if plain:
        lab.setTextFormat(Qt.TextFormat.PlainText)
    return lab


def job_progress() -> QProgressBar:
    """A progress bar for a widget's jobs, hidden until a job runs."""
    bar = QProgressBar()
    bar.setTextVisible(True)
    bar.setVisible(False)
    return bar
