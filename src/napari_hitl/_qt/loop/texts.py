"""The loop widget's rich-text summaries: the Train history and the labeled areas per class."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_hitl.core.store.classes import ClassInfo

HISTORY_LINES = 6  # Trains shown in the widget (the CLI's `history` has them all)


def history_text(records: list[dict[str, Any]], last: int = HISTORY_LINES) -> str:
    """The widget's history: a title and one line per Train (the ``last`` ones), as rich text."""
    if not records:
        return ""
    lines = []
    for r in records[-last:]:
        acc = r.get("holdout_accuracy")
        held = f"held-out {acc:.1%}" if acc is not None else "held-out —"
        lines.append(
            f"#{r.get('train', '?')} it {r.get('iteration', '?')}: "
            f"{r.get('human_pixels', 0)} px / {r.get('human_strokes', 0)} strokes · "
            f"labeled {r.get('labeled_fraction', 0.0):.1%} "
            f"(machine {r.get('machine_fraction', 0.0):.1%}) · {held}"
        )
    earlier = len(records) - len(lines)
    title = "<b>History</b>" + (f" ({earlier} earlier Trains not shown)" if earlier else "")
    return title + "<br>" + "<br>".join(lines)


def areas_text(
    classes: Sequence[ClassInfo], labels: np.ndarray, predicted: np.ndarray | None
) -> str:
    """One line per class: a colour swatch, its name, the share of ``labels`` it covers and,
    with a prediction, the share of ``predicted`` (rich text; names are escaped)."""
    lines = []
    total = labels.size
    for c in classes:
        lab = float((labels == c.value).sum()) / total
        name = html.escape(c.name)  # rich text: a name is text, never markup
        line = f"<span style='color:{c.color}'>■</span> {name}: labels {lab:.1%}"
        if predicted is not None:
            line += f", prediction {float((predicted == c.value).mean()):.1%}"
        lines.append(line)
    return "<br>".join(lines)
