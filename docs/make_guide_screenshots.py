r"""Screenshots of the Guide the model widget for docs/guide.md and docs/user-guide.md (section 15).

Run it from the repository root under a virtual screen (napari needs OpenGL)::

    OMP_NUM_THREADS=1 xvfb-run -a -s "-screen 0 1600x1000x24" \
        .venv/bin/python docs/make_guide_screenshots.py

It builds a one-image sample project in a temporary folder, paints sparse scribbles of the ground
truth, trains a deliberately short model, then drives the widget as a person would: paint a few
hint pixels of water where the model missed it and Apply; Reset; type a command and Apply;
Accept. PNGs land in ``docs/images/guide/15_*.png``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import napari
import numpy as np
from scipy import ndimage
from screenshot_helpers import OUT, WINDOW, log, settle, shot, wait_jobs

from napari_hitl.core.evaluation.scribbles import sparse_scribbles
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.loop import predict_project_image, train_project
from napari_hitl.core.progress import run_to_end
from napari_hitl.core.sample.store import build_sample_store

WATER = 5


def _iou(pred: np.ndarray, gt: np.ndarray, value: int = WATER) -> float:
    a, b = pred == value, gt == value
    return float((a & b).sum() / max((a | b).sum(), 1))


def _apply(widget, gt: np.ndarray) -> None:
    """Apply, wait, and log the status line and what the guide did to the right pixels."""
    widget.apply()
    wait_jobs(widget)
    log(widget.status.text())
    s = widget.session
    log(f"pixels right: plain {(s.plain.labels == gt).mean():.3f}, guided "
        f"{(s.guided.labels == gt).mean():.3f}; water IoU {_iou(s.plain.labels, gt):.3f} → "
        f"{_iou(s.guided.labels, gt):.3f}")  # fmt: skip


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="hitl-guide-"))
    store = build_sample_store(tmp / "scenes.zarr", (384, 384), n_images=1)
    gt = store.read_derived("sample", "ground_truth")
    store.write_labels("sample", sparse_scribbles(gt, 0.005, seed=0))
    run_to_end(train_project(store, TrainConfig(steps=25)))
    pred = run_to_end(predict_project_image(store, "sample"))
    missed = (gt == WATER) & (pred.labels != WATER)
    log(f"trained; water missed on {int(missed.sum())} of {int((gt == WATER).sum())} px")
    # hints: the 5 deepest pixels of the largest missed water patch
    comp, n = ndimage.label(missed)
    sizes = ndimage.sum(np.ones_like(comp), comp, range(1, n + 1))
    big = comp == int(np.argmax(sizes)) + 1
    depth = ndimage.distance_transform_edt(big)
    order = np.argsort(depth.ravel())[::-1][:400:80]
    points = [tuple(int(v) for v in np.unravel_index(i, depth.shape)) for i in order]
    log(f"hints at {points}")

    viewer = napari.Viewer(title="napari-hitl guide", show=True)
    viewer.window.resize(*WINDOW)
    _pdock, project = viewer.window.add_plugin_dock_widget("napari-hitl", "Project")
    project.open_store(store.path)
    gdock, widget = viewer.window.add_plugin_dock_widget(
        "napari-hitl", "Guide the model", tabify=True
    )
    viewer.window.resize(*WINDOW)
    gdock.raise_()
    settle(0.5)
    lab = viewer.layers["sample labels"]
    viewer.layers.selection.active = lab
    widget.refresh_classes()
    widget.class_combo.setCurrentIndex(widget.class_combo.findData(WATER))
    widget.hint_button.toggle()
    hints = viewer.layers["sample hints"]
    data = np.asarray(hints.data).copy()
    for r, c in points:
        data[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2] = WATER  # brush size 3
    hints.data = data
    widget.hint_button.toggle()
    shot(viewer, "15a_hints")
    _apply(widget, gt)
    viewer.layers["sample prediction"].visible = True
    shot(viewer, "15b_guided")
    widget.reset()
    # the command a person would type: find water in the cell where most of it is missed
    from napari_hitl.core.hints.commands import CELL_NAMES

    h, w = missed.shape
    per_cell = [missed[r * h // 3 : (r + 1) * h // 3, c * w // 3 : (c + 1) * w // 3].sum()
                for r in range(3) for c in range(3)]  # fmt: skip
    widget.command_edit.setText(f"find water in {CELL_NAMES[int(np.argmax(per_cell))]}")
    _apply(widget, gt)
    viewer.layers["sample prediction"].visible = True
    shot(viewer, "15c_command")
    widget.threshold_spin.setValue(0.6)  # a weak model: few pixels reach 0.9
    n = widget.accept()
    log(f"accepted {n} px")
    viewer.layers["sample prediction"].visible = False
    viewer.layers["sample guide change"].visible = False
    shot(viewer, "15d_accepted")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
