r"""Screenshots of the Active-learning widget for docs/user-guide.md (section 13).

Run it from the repository root under a virtual screen (napari needs OpenGL)::

    OMP_NUM_THREADS=1 xvfb-run -a -s "-screen 0 1600x1000x24" \
        .venv/bin/python docs/make_queue_screenshots.py

It builds a two-image sample project in a temporary folder, paints scribbles of the ground truth
into the first image, trains a model, then drives the widget as a person would: Rank (hise,
128 px tiles), click the first row, Next question, and Find suspect labels after a deliberate
slip of the brush. PNGs land in ``docs/images/guide/13_*.png``.
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
from napari_hitl.core.loop import current_prediction, load_state, train_project
from napari_hitl.core.progress import run_to_end
from napari_hitl.core.sample.store import build_sample_store


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="hitl-queue-"))
    store = build_sample_store(tmp / "scenes.zarr", (384, 384), n_images=2)
    gt = store.read_derived("sample_00", "ground_truth")
    store.write_labels("sample_00", sparse_scribbles(gt, 0.01, seed=0))
    run_to_end(train_project(store, TrainConfig()))
    log("trained")

    viewer = napari.Viewer(title="napari-hitl active learning", show=True)
    viewer.window.resize(*WINDOW)
    _pdock, project = viewer.window.add_plugin_dock_widget("napari-hitl", "Project")
    project.open_store(store.path)
    qdock, queue = viewer.window.add_plugin_dock_widget(
        "napari-hitl", "Active learning", tabify=True
    )
    viewer.window.resize(*WINDOW)
    qdock.raise_()
    settle(0.5)

    queue.strategy_combo.setCurrentText("hise")
    queue.tile_spin.setValue(128)
    queue.rank()
    wait_jobs(queue)
    first = queue.ranking.items[0]
    queue.table.selectRow(0)
    log(f"ranked {len(queue.ranking.items)} items; first {first.key}, tau_l {first.stats.tau_l}")
    shot(viewer, "13a_queue_ranked")

    queue.ask()
    wait_jobs(queue)
    q = queue.pending[3]
    log(f"question at {q.row}, {q.col}: {q.first} vs {q.second}, margin {q.margin:.3f}")
    shot(viewer, "13b_question")
    queue.answer(q.first)  # asks the next one at once
    wait_jobs(queue)
    queue._end_question()

    # a slip of the brush: a confidently predicted patch painted with another class
    pred = current_prediction(store, "sample_00", load_state(store))
    lab = viewer.layers["sample_00 labels"]
    # the unlabeled pixel deepest inside a region the model is sure of (≥ 0.95, or its most
    # confident tenth when it is nowhere that sure)
    free = lab.data == 0
    sure = min(0.95, float(np.quantile(pred.confidence[free], 0.9)))
    depth = ndimage.distance_transform_edt((pred.confidence >= sure) & free)
    r, c = np.unravel_index(int(np.argmax(depth)), depth.shape)
    assert depth[r, c] >= 4, f"no confident region for the slip (deepest {depth[r, c]:.1f} px)"
    slip = 5 if pred.labels[r, c] != 5 else 1
    lab.data[r - 3 : r + 3, c - 3 : c + 3] = slip
    lab.refresh()
    queue.find_suspects()
    wait_jobs(queue)
    assert queue.suspects, "the painted slip was not found"
    queue.suspect_list.setCurrentRow(0)
    log(f"{len(queue.suspects)} suspects; first {queue.suspects[0].to_json()}")
    shot(viewer, "13c_suspects")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
