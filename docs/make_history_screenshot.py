r"""Screenshot of the Learning loop widget's History for docs/user-guide.md (section 3).

Run it from the repository root under a virtual screen (napari needs OpenGL; do not set
``QT_QPA_PLATFORM=offscreen``)::

    OMP_NUM_THREADS=1 xvfb-run -a -s "-screen 0 1600x1000x24" \
        .venv/bin/python docs/make_history_screenshot.py

It opens the sample (File ▸ Open Sample ▸ napari-hitl, built in a temporary folder) with the
Project and Learning loop widgets, paints scribbles of the ground truth and a few road strokes
as docs/make_screenshots.py does, then runs two Trains the way a person would: Train, Infer &
filter, Add predictions at threshold 0.90, more scribbles, Train again. The Learning loop dock,
cropped to its History and the lines above it, lands in ``docs/images/guide/03c_history.png``.
Under a minute on 2 CPU cores.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

TMP = Path(tempfile.mkdtemp(prefix="hitl-history-"))
os.environ["NAPARI_HITL_SAMPLE_DIR"] = str(TMP)  # before napari-hitl reads it

import napari  # noqa: E402
from scipy import ndimage  # noqa: E402
from screenshot_helpers import OUT, WINDOW, log, settle, shot, wait_jobs  # noqa: E402

from napari_hitl.core.evaluation.scribbles import sparse_scribbles  # noqa: E402

NAME = "03c_history"


def road_strokes(layer, gt: np.ndarray, road: int, rng, n: int = 6, length: int = 24) -> None:
    """``n`` short straight 3 px brush strokes well inside the roads (``Labels.paint`` at each
    brush position inside ``block_history()``, as the brush does; see make_screenshots.py)."""
    layer.brush_size = 3
    layer.selected_label = road
    inside = ndimage.binary_erosion(gt == road, iterations=layer.brush_size // 2 + 1)
    deep = np.argwhere(ndimage.binary_erosion(gt == road, iterations=2))
    h, w = gt.shape
    for r, c in deep[rng.choice(len(deep), size=min(n, len(deep)), replace=False)]:
        rows = [(r, c + d) for d in range(0, length, 2) if c + d < w and inside[r, c + d]]
        cols = [(r + d, c) for d in range(0, length, 2) if r + d < h and inside[r + d, c]]
        with layer.block_history():
            for pos in max(rows, cols, key=len):
                layer.paint(pos, road, refresh=False)
    layer.refresh()


def dock_shot(viewer, loop, dock, name: str) -> Path:
    """Screenshot the window and keep the dock from the status line down to the History."""
    settle(0.5)
    g = dock.geometry()
    top = loop.status.mapTo(dock, loop.status.rect().topLeft()).y() - 8
    hist = loop.history_label
    bottom = hist.mapTo(dock, hist.rect().bottomLeft()).y() + 8
    return shot(viewer, name, box=(g.x(), g.y() + top, g.x() + g.width(), g.y() + bottom))


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    viewer = napari.Viewer(title="napari-hitl history", show=True)
    viewer.window.resize(*WINDOW)
    viewer.open_sample("napari-hitl", "sample_scene")
    _pdock, project = viewer.window.add_plugin_dock_widget("napari-hitl", "Project")
    ldock, loop = viewer.window.add_plugin_dock_widget("napari-hitl", "Learning loop", tabify=True)
    viewer.window.resize(*WINDOW)
    ldock.raise_()
    settle(0.5)
    labels = viewer.layers["sample labels"]
    gt = np.asarray(viewer.layers["ground truth"].data)
    road = next(c.value for c in project.store.classes if c.name == "road")
    config = replace(loop.train_config(), threads=1)  # the widget's settings, on one core

    # iteration 1: scribbles + road strokes, Train, Infer & filter, Add predictions
    loop.select_class(1)
    labels.data = sparse_scribbles(gt, 0.01, seed=0).astype(np.uint16)
    road_strokes(labels, gt, road, rng)
    loop.select_class(1)
    assert loop.train(config)
    wait_jobs(loop)
    log(loop.status.text())
    assert loop.infer()
    wait_jobs(loop)
    loop.threshold_slider.setValue(90)
    log(f"added {loop.add_predictions()} px")

    # iteration 2: more scribbles (painting over a machine label corrects it), Train again
    lab = np.asarray(labels.data).copy()
    more = sparse_scribbles(gt, 0.006, seed=1).astype(np.uint16)
    lab[more > 0] = more[more > 0]
    labels.data = lab
    assert loop.train(config)
    wait_jobs(loop)
    log(loop.status.text())
    log(loop.history_label.text())
    assert loop.history_label.text().count("<br>") >= 2  # title + two Trains
    dock_shot(viewer, loop, ldock, NAME)
    viewer.close()
    shutil.rmtree(TMP, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
