r"""Screenshots of the Explain and guide widget for docs/explain.md and docs/user-guide.md
(section 14).

Run it from the repository root under a virtual screen (napari needs OpenGL)::

    OMP_NUM_THREADS=1 xvfb-run -a -s "-screen 0 1600x1000x24" \
        .venv/bin/python docs/make_explain_screenshots.py

It builds a one-image sample project in a temporary folder, paints scribbles of the ground truth,
trains a model, then drives the widget as a person would: hover a predicted building and Compute
(Alt-E), map the strongest band of the chart, click a positive point on the building and a negative
one on its surroundings, Confirm and Fine-tune. PNGs land in ``docs/images/guide/14_*.png``.
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


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="hitl-explain-"))
    store = build_sample_store(tmp / "scenes.zarr", (384, 384), n_images=1)
    gt = store.read_derived("sample", "ground_truth")
    store.write_labels("sample", sparse_scribbles(gt, 0.01, seed=0))
    run_to_end(train_project(store, TrainConfig(steps=120)))
    pred = run_to_end(predict_project_image(store, "sample"))
    log("trained and predicted")
    # the largest predicted building, its deepest pixel
    comp, n = ndimage.label(pred.labels == 4)
    sizes = ndimage.sum(np.ones_like(comp), comp, range(1, n + 1))
    big = comp == int(np.argmax(sizes)) + 1
    depth = ndimage.distance_transform_edt(big)
    r, c = (int(v) for v in np.unravel_index(int(np.argmax(depth)), depth.shape))
    log(f"building segment of {int(big.sum())} px around ({r}, {c})")

    viewer = napari.Viewer(title="napari-hitl explain & guide", show=True)
    viewer.window.resize(*WINDOW)
    _pdock, project = viewer.window.add_plugin_dock_widget("napari-hitl", "Project")
    project.open_store(store.path)
    adock, widget = viewer.window.add_plugin_dock_widget(
        "napari-hitl", "Explain and guide", tabify=True
    )
    viewer.window.resize(*WINDOW)
    adock.raise_()
    settle(0.5)
    lab = viewer.layers["sample labels"]
    viewer.layers.selection.active = lab
    widget.refresh_classes()
    widget.class_combo.setCurrentText("building")
    widget.region_combo.setCurrentText("segment under the cursor")
    viewer.cursor.position = tuple(lab.data_to_world([r, c]))
    from napari_hitl._napari.view import centre_on

    centre_on(viewer, lab, r, c, extent=(160, 160))
    widget.compute()
    wait_jobs(widget)
    exp = widget.explanation
    log(f"Grad-CAM peak {exp.cam.peak:.3g}; bands {exp.attribution.ranking()[:3]}")
    shot(viewer, "14a_gradcam")

    widget.band_combo.setCurrentText(exp.attribution.ranking()[0][0])  # the strongest band
    viewer.layers["sample Grad-CAM"].visible = False
    viewer.layers["sample band attribution"].visible = True
    shot(viewer, "14b_band_map")
    viewer.layers["sample band attribution"].visible = False
    viewer.layers["sample Grad-CAM"].visible = True

    widget.set_click_mode(True)
    cam = exp.cam.map.copy()
    cam[big] = 0  # the strongest attention outside the building: what the user rejects
    nr, nc = (int(v) for v in np.unravel_index(int(np.argmax(cam)), cam.shape))
    widget.add_click((r, c), positive=True)
    widget.add_click((nr, nc), positive=False)
    widget.confirm()
    widget.set_click_mode(False)
    log(f"clicks: positive ({r}, {c}), negative ({nr}, {nc})")
    shot(viewer, "14c_clicks")
    widget.fine_tune()
    wait_jobs(widget)
    log(widget.status.text())
    shot(viewer, "14d_finetuned")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
