r"""Make the screenshots of docs/user-guide.md by driving the napari-hitl widgets in a real viewer.

Run it from the repository root under a virtual screen (napari needs OpenGL; do not set
``QT_QPA_PLATFORM=offscreen``)::

    OMP_NUM_THREADS=1 xvfb-run -a -s "-screen 0 1600x1000x24" \
        .venv/bin/python docs/make_screenshots.py

It does what a person does, through the same widgets and methods the buttons call:

1. File ▸ Open Sample ▸ napari-hitl (``viewer.open_sample``; the sample project is built in a
   temporary folder, ``$NAPARI_HITL_SAMPLE_DIR``, so the user's cache stays untouched), then
   Plugins ▸ napari-hitl ▸ Project and ▸ Learning loop;
2. three iterations of the loop: scribbles (``sparse_scribbles`` of the sample's ground truth
   stand in for the brush), Train, Infer & filter, threshold, Add predictions; class editor and
   band panel; live mode with brush strokes (``Labels.paint``, what the brush calls); positive /
   negative points; the region rectangle;
3. closes napari and reopens the project store in a new viewer to check that the work resumes
   (labels back, Infer & filter works with the saved model, no retraining);
4. a small Z stack: predict the slice on show, then the whole stack.

PNGs land in ``docs/images/guide/`` (window 1500 × 950, scaled to ≤ 1400 px wide, palette PNGs).
It prints the shortcut table of the guide (from ``LOOP_SHORTCUTS`` / ``PROJECT_SHORTCUTS``) and
checks that docs/user-guide.md still holds it. It takes a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "images" / "guide"
GUIDE = HERE / "user-guide.md"
WINDOW = (1500, 950)
MAX_WIDTH = 1400

TMP = Path(tempfile.mkdtemp(prefix="hitl-guide-"))
os.environ["NAPARI_HITL_SAMPLE_DIR"] = str(TMP)  # before napari-hitl reads it

import napari  # noqa: E402
from PIL import Image  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402
from scipy import ndimage  # noqa: E402

from napari_hitl._napari.names import result_layer_names  # noqa: E402
from napari_hitl._napari.shortcuts import (  # noqa: E402
    ATTENTION_SHORTCUTS,
    GUIDE_SHORTCUTS,
    LOOP_SHORTCUTS,
    PROJECT_SHORTCUTS,
    QUEUE_SHORTCUTS,
)
from napari_hitl.core.evaluation.scribbles import sparse_scribbles  # noqa: E402
from napari_hitl.core.learning.registry import list_checkpoints  # noqa: E402
from napari_hitl.core.loop import load_state  # noqa: E402
from napari_hitl.core.store import PROVENANCE_HUMAN, ProjectStore  # noqa: E402

T0 = time.perf_counter()
SHOTS: list[tuple[str, int]] = []


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f} s] {msg}", flush=True)


def settle(seconds: float = 0.3) -> None:
    """Let Qt lay out and draw (and worker results arrive)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def wait_for(condition, timeout: float = 300, what: str = "") -> None:
    end = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > end:
            raise TimeoutError(f"waited {timeout} s for {what}")
        QApplication.processEvents()
        time.sleep(0.02)
    settle(0.2)


def wait_jobs(loop, timeout: float = 300) -> None:
    wait_for(lambda: not loop.jobs.busy, timeout, f"job {loop.jobs.name}")


def camera(viewer):
    return viewer.scene.camera


def shot(viewer, name: str, crop: tuple[int, int, int, int] | None = None) -> Path:
    """Screenshot the whole window (dock widgets included), crop, scale, palette, save."""
    settle(0.4)
    arr = viewer.window.screenshot(flash=False, canvas_only=False)
    img = Image.fromarray(np.asarray(arr)).convert("RGB")
    if crop is not None:
        img = img.crop(crop)
    (TMP / "raw").mkdir(exist_ok=True)
    img.save(TMP / "raw" / f"{name}.png")  # unscaled, full colour (KEEP_TMP=1 keeps them)
    if img.width > MAX_WIDTH:
        img = img.resize((MAX_WIDTH, round(img.height * MAX_WIDTH / img.width)), Image.LANCZOS)
    img = img.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    path = OUT / f"{name}.png"
    img.save(path, optimize=True)
    kb = path.stat().st_size // 1024
    SHOTS.append((path.name, kb))
    log(f"wrote {path.relative_to(HERE.parent)} ({img.width}×{img.height}, {kb} KB)")
    return path


def dock_crop(viewer, dock) -> tuple[int, int, int, int]:
    """Crop box (window pixels) of a dock widget, for close-ups."""
    g = dock.geometry()
    ratio = viewer.window.screenshot(flash=False, canvas_only=False).shape[1] / WINDOW[0]
    return (
        int(g.x() * ratio),
        int(g.y() * ratio),
        int((g.x() + g.width()) * ratio),
        int((g.y() + g.height()) * ratio),
    )


def show_only(viewer, visible: set[str]) -> None:
    """Show exactly the named layers (and the composite ``sample``)."""
    for layer in viewer.layers:
        layer.visible = layer.name in visible


def interior_points(gt: np.ndarray, value: int, depth: int, rng, n: int, box=None):
    """``n`` pixels of class ``value`` at least ``depth`` px inside its regions (in ``box``)."""
    inside = ndimage.binary_erosion(gt == value, iterations=depth)
    if box is not None:
        r0, r1, c0, c1 = box
        keep = np.zeros_like(inside)
        keep[r0:r1, c0:c1] = True
        inside &= keep
    where = np.argwhere(inside)
    return where[rng.choice(len(where), size=min(n, len(where)), replace=False)]


def stroke(layer, gt: np.ndarray, start, value: int, length: int = 16) -> None:
    """A short straight brush stroke inside class ``value`` (along a row or a column, whichever
    stays inside longer), as the paint brush makes it: ``Labels.paint`` at each brush position
    inside ``block_history()``, so napari emits one ``paint`` event when the stroke ends (as
    for a mouse drag)."""
    inside = ndimage.binary_erosion(gt == value, iterations=layer.brush_size // 2 + 1)
    r, c = (int(v) for v in start)
    h, w = gt.shape
    rows = [(r, c + d) for d in range(0, length, 2) if c + d < w and inside[r, c + d]]
    cols = [(r + d, c) for d in range(0, length, 2) if r + d < h and inside[r + d, c]]
    layer.selected_label = value
    with layer.block_history():
        for pos in max(rows, cols, key=len):
            layer.paint(pos, value, refresh=False)
    layer.refresh()


def shortcut_table() -> str:
    rows = ["| shortcut | widget | does |", "|---|---|---|"]
    rows += [f"| {k} | Learning loop | {what} |" for k, what in LOOP_SHORTCUTS]
    rows += [f"| {k} | Project | {what} |" for k, what in PROJECT_SHORTCUTS]
    rows += [f"| {k} | Active learning | {what} |" for k, what in QUEUE_SHORTCUTS]
    rows += [f"| {k} | Explain and guide | {what} |" for k, what in ATTENTION_SHORTCUTS]
    rows += [f"| {k} | Guide the model | {what} |" for k, what in GUIDE_SHORTCUTS]
    return "\n".join(rows)


# ============================================================================== the walkthrough
def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    facts: dict[str, object] = {}

    # ---------------------------------------------------------------- 1. open sample + widgets
    viewer = napari.Viewer(title="napari-hitl user guide", show=True)
    viewer.window.resize(*WINDOW)
    viewer.open_sample("napari-hitl", "sample_scene")  # File ▸ Open Sample ▸ napari-hitl
    # Plugins ▸ napari-hitl ▸ Project / Learning loop (tabbed, so each gets the full height)
    pdock, project = viewer.window.add_plugin_dock_widget("napari-hitl", "Project")
    ldock, loop = viewer.window.add_plugin_dock_widget("napari-hitl", "Learning loop", tabify=True)
    viewer.window.resize(*WINDOW)
    settle(0.5)
    viewer.reset_view()
    store_path = project.store.path
    log(f"sample project in {store_path}; layers {[ly.name for ly in viewer.layers]}")
    assert loop.labels_combo.currentText() == "sample labels"
    labels = viewer.layers["sample labels"]
    gt = np.asarray(viewer.layers["ground truth"].data)
    classes = project.store.classes
    pdock.raise_()
    shot(viewer, "01_open_sample_project")
    ldock.raise_()
    shot(viewer, "01b_learning_loop_widget", crop=dock_crop(viewer, ldock))

    # ---------------------------------------------------------------- 2. paint two+ classes
    loop.select_class(1)  # Alt-1: paint with class 1, labels layer active, paint mode
    painted = sparse_scribbles(gt, 0.01, seed=0).astype(np.uint16)  # stands in for the brush
    labels.data = painted
    # roads are too narrow for those scribbles: a few brush strokes with a 3 px brush
    labels.brush_size = 3
    road = next(c.value for c in classes if c.name == "road")
    for start in interior_points(gt, road, 2, rng, 6):
        stroke(labels, gt, start, road, length=24)
    loop.select_class(1)  # Alt-1 again: the brush is back on class 1
    settle()
    assert loop.status.text().startswith("Painting")
    shot(viewer, "02_scribbles")

    # ---------------------------------------------------------------- 3. Train (iteration 1)
    assert loop.train()  # the Train button
    wait_for(lambda: loop.progress.value() > 0, 120, "training progress")
    shot(viewer, "03a_training", crop=dock_crop(viewer, ldock))
    wait_jobs(loop)
    log(loop.status.text())
    assert "iteration 1" in loop.status.text()
    shot(viewer, "03b_trained", crop=dock_crop(viewer, ldock))

    # ---------------------------------------------------------------- 4. Infer & filter
    names = result_layer_names("sample")
    assert loop.infer()
    wait_jobs(loop)
    assert loop.prediction is not None
    show_only(viewer, {"sample", names["confidence"]})
    viewer.layers.selection.active = viewer.layers[names["confidence"]]
    shot(viewer, "04a_confidence")
    show_only(viewer, {"sample", "sample labels", names["accepted"]})
    viewer.layers.selection.active = labels
    facts["accepted_095"] = loop.status.text()
    log(loop.status.text())
    shot(viewer, "04b_accepted_095")

    # ---------------------------------------------------------------- 5. lower the threshold
    loop.threshold_slider.setValue(80)
    facts["accepted_080"] = loop.status.text()
    log(loop.status.text())
    shot(viewer, "05_threshold_080")

    # ---------------------------------------------------------------- 6. Add predictions
    added1 = loop.add_predictions()
    log(f"{loop.status.text()}")
    assert added1 > 0
    show_only(viewer, {"sample labels"})  # the labels alone: black = still unlabeled
    shot(viewer, "06_added_iteration1")

    # ---------------------------------------------------------------- 7. classes and bands
    pdock.raise_()
    ed = project.class_editor
    building = next(c.value for c in classes if c.name == "building")
    assert ed.rename_class(building, "roof")
    new = ed.add_class("cloud", "#ffffff")
    assert new is not None
    assert project.band_panel.set_rgb((6, 4, 2))  # B07 (NIR) / B05 (red) / B03 (green)
    ed.table.selectRow(len(ed.classes()) - 1)
    ed.table.scrollToBottom()
    show_only(viewer, {"sample"})  # the new composite on its own
    settle()
    shot(viewer, "07_classes_and_bands")
    assert ProjectStore.open(store_path).image_info("sample").rgb == (6, 4, 2)  # saved at once
    # the new class is unused, so it can go again (the model keeps five classes: warm start)
    assert ed.remove_class(new.value)
    assert [c.name for c in ed.classes()][3] == "roof"
    assert project.band_panel.set_rgb((4, 2, 1))  # natural colours again, for the pictures
    ldock.raise_()

    # ---------------------------------------------------------------- iteration 2: correct, train
    store = ProjectStore.open(store_path)
    lab = np.asarray(labels.data).copy()
    wrong = (lab > 0) & (lab != gt) & (store.provenance("sample") > PROVENANCE_HUMAN)
    facts["machine_wrong_it1"] = int(wrong.sum())
    more = sparse_scribbles(gt, 0.006, seed=1).astype(np.uint16)
    lab[more > 0] = more[more > 0]  # more strokes; painting over a machine label corrects it
    labels.data = lab
    assert loop.train()
    wait_jobs(loop)
    log(loop.status.text())
    assert "iteration 2" in loop.status.text() and "warm start" in loop.status.text()
    assert loop.infer()
    wait_jobs(loop)
    loop.threshold_slider.setValue(90)
    added2 = loop.add_predictions()
    log(f"{loop.status.text()}")

    # ---------------------------------------------------------------- 8. live mode
    cam = camera(viewer)
    cam.zoom = cam.zoom * 2.2
    cam.center = (0, 280, 250)[-len(cam.center) :]
    settle()
    pred_layer = viewer.layers[names["prediction"]]
    show_only(viewer, {"sample", "sample labels", names["prediction"]})
    viewer.layers.selection.active = labels
    loop.live_check.setChecked(True)  # Alt-L
    assert loop.live.active and loop.jobs.name == "Live"
    wait_for(lambda: loop.live.rounds >= 1, 180, "first live round")
    box = loop.live.last_update.box
    log(f"live round 1, visible box {box}")
    labels.brush_size = 5
    water = next(c.value for c in classes if c.name == "water")
    ground = next(c.value for c in classes if c.name == "ground")
    for i, value in enumerate((water, ground, water, 1)):
        (start,) = interior_points(gt, value, 4, rng, 1, box)
        stroke(labels, gt, start, value)
        version = loop.live.inbox.version
        wait_for(lambda v=version: loop.live.last_update.labels_version >= v, 180, f"stroke {i}")
    saved = ProjectStore.open(store_path).labels("sample")
    assert (saved == np.asarray(labels.data)).all()  # each stroke was saved at once
    # no more strokes: after LiveSettings.idle_rounds rounds the trainer pauses
    wait_for(lambda: "paused" in loop.live.last_update.message, 180, "live pause")
    facts["live_paused_after_rounds"] = loop.live.rounds
    # pan: the paused trainer predicts the new view without training
    cam.center = (0, 280, 300)[-len(cam.center) :]
    wait_for(lambda: loop.live.last_update.box != box, 180, "prediction of the panned view")
    facts["live_boxes"] = (box, loop.live.last_update.box)
    facts["live_pan_round_trained"] = loop.live.last_update.trained
    facts["live_rounds"] = loop.live.rounds
    log(loop.status.text())
    pred_layer.opacity = 0.8
    shot(viewer, "08a_live")
    loop.live_check.setChecked(False)  # saves the model, then predicts the whole image
    wait_for(
        lambda: not loop.live.active and not loop.jobs.busy and loop.jobs.name == "Inference",
        300,
        "live stop + whole-image inference",
    )
    log(loop.status.text())
    state = load_state(ProjectStore.open(store_path))
    assert state.iteration == 3
    pred_layer.opacity = 0.6
    viewer.reset_view()
    shot(viewer, "08b_live_off")

    # ---------------------------------------------------------------- 9. points and region
    # where to look: the 128 × 128 window where most pixels would be added at 0.85
    loop.threshold_slider.setValue(85)
    accepted = loop.accepted_mask()
    density = ndimage.uniform_filter(accepted.astype(np.float32), 128, mode="constant")
    cr, cc = np.unravel_index(np.argmax(density[64:-64, 64:-64]), (384, 384))
    cr, cc = int(cr) + 64, int(cc) + 64
    window = (cr - 64, cr + 64, cc - 64, cc + 64)
    store = ProjectStore.open(store_path)
    lab = np.asarray(labels.data)
    prov = store.provenance("sample")
    # positive points: unlabeled pixels, not in the preview, of the class with most of them
    free_gt = np.where((lab == 0) & ~accepted, gt, 0)
    inner = [
        (
            int(
                ndimage.binary_erosion(free_gt == c.value, iterations=2)[
                    window[0] : window[1], window[2] : window[3]
                ].sum()
            ),
            c.value,
        )
        for c in classes
    ]
    pos_value = max(inner)[1]
    positive = [tuple(p) for p in interior_points(free_gt, pos_value, 2, rng, 3, window)]
    # a negative point: on a small machine region in view but outside the rectangle (a negative
    # point removes the whole connected machine region of its class); the most wrong one
    view = (max(cr - 100, 0), min(cr + 100, 512), max(cc - 100, 0), min(cc + 100, 512))
    outside = np.ones_like(lab, bool)
    outside[window[0] - 3 : window[1] + 3, window[2] - 3 : window[3] + 3] = False
    negative, best = None, (-1.0, 0)
    machine = (prov > PROVENANCE_HUMAN) & (lab > 0)
    for c in classes:
        comps, _n = ndimage.label(machine & (lab == c.value))
        for k in np.unique(comps[view[0] : view[1], view[2] : view[3]]):
            comp = comps == k
            if k == 0 or comp.sum() > 1500 or (comp & ~outside).any():
                continue
            pts = np.argwhere(comp)
            mid = pts[len(pts) // 2]
            in_view = (
                view[0] + 10 <= mid[0] < view[1] - 10 and view[2] + 10 <= mid[1] < view[3] - 10
            )
            if not in_view:
                continue
            key = (float((gt[comp] != c.value).mean()), int(comp.sum()))
            if key > best:
                negative, best = (tuple(int(v) for v in mid), c.value), key
    facts["negative_point_region (wrong share, size)"] = best
    name_of = {c.value: c.name for c in ProjectStore.open(store_path).classes}
    facts["points (positive class, negative class)"] = (
        name_of[pos_value],
        name_of[negative[1]] if negative else None,
    )
    viewer.reset_view()
    cam.zoom = cam.zoom * 512 / 200
    cam.center = (0, cr, cc)[-len(cam.center) :]
    show_only(viewer, {"sample", "sample labels", names["accepted"]})
    loop.select_class([c.value for c in classes].index(pos_value) + 1)  # Alt-<n>
    points = loop.points.add_layer()  # Points…
    for p in positive:
        points.add(list(p))
    if negative is not None:
        # napari selects a point just added, and the point colour set by the *negative* box
        # goes to the selected points too: deselect before ticking it
        points.selected_data = set()
        labels.selected_label = negative[1]  # "not this class here"
        loop.points.negative_check.setChecked(True)
        points.add(list(negative[0]))
        points.selected_data = set()
        loop.points.negative_check.setChecked(False)
    loop.draw_region()  # Region…
    region = viewer.layers[names["region"]]
    region.add_rectangles(np.array([[window[0], window[2]], [window[1], window[3]]]))
    points.selected_data = set()
    viewer.layers.selection.active = points
    log(f"region box {loop.region_box()}; {loop.status.text()}")
    facts["region_preview"] = loop.status.text()
    shot(viewer, "09_points_and_region")

    # ---------------------------------------------------------------- 10. iteration 3 pushed
    before = np.asarray(labels.data).copy()
    result = loop.points.apply()  # Apply points
    facts["points_result (labeled, removed, skipped)"] = (
        (result.labeled, result.removed, result.skipped) if result else None
    )
    removed = (before > 0) & (np.asarray(labels.data) == 0)
    added3 = loop.add_predictions()  # inside the rectangle only
    log(loop.status.text())
    assert added3 > 0
    viewer.layers.remove(region)  # delete the rectangle: the whole image again
    viewer.reset_view()
    show_only(viewer, {"sample labels"})
    viewer.layers.selection.active = labels
    shot(viewer, "10_iteration3")
    store = ProjectStore.open(store_path)
    final_labels = store.labels("sample").copy()
    assert (final_labels == np.asarray(labels.data)).all()
    again = loop.accepted_mask()  # the whole image again: would the same prediction re-add?
    facts["removed_by_negative_point"] = int(removed.sum())
    facts["of_which_in_accepted_preview"] = int((again & removed).sum()) if again is not None else 0
    facts["labeled_share"] = float((final_labels > 0).mean())
    facts["label_accuracy"] = float((final_labels == gt)[final_labels > 0].mean())
    checkpoints = list_checkpoints(store)
    facts["added"] = (added1, added2, added3)

    # ---------------------------------------------------------------- 11. close, reopen, resume
    viewer.close()  # closing napari cancels running jobs (none here)
    settle(0.5)
    viewer = napari.Viewer(title="napari-hitl user guide — resumed", show=True)
    viewer.window.resize(*WINDOW)
    pdock, project = viewer.window.add_plugin_dock_widget("napari-hitl", "Project")
    project.open_store(store_path)  # Project ▸ Open… (the dialog calls this)
    ldock, loop = viewer.window.add_plugin_dock_widget("napari-hitl", "Learning loop", tabify=True)
    viewer.window.resize(*WINDOW)
    settle(0.5)
    viewer.reset_view()
    labels = viewer.layers["sample labels"]
    assert (np.asarray(labels.data) == final_labels).all(), "labels not restored"
    assert [c.name for c in project.store.classes][3] == "roof"
    assert project.band_panel.rgb() == (4, 2, 1)
    assert loop.infer(), "Infer & filter refused after reopening"
    wait_jobs(loop)
    assert "iteration 3" in loop.status.text(), loop.status.text()
    after = ProjectStore.open(store_path)
    assert load_state(after).iteration == 3 and list_checkpoints(after) == checkpoints
    facts["resume"] = loop.status.text()
    log(f"resumed: {loop.status.text()}")
    show_only(viewer, {"sample", "sample labels", names["accepted"]})
    viewer.layers.selection.active = labels
    shot(viewer, "11_resumed")
    undone = loop.undo()  # the push history is in the store too: Undo push still works
    assert undone == added3, (undone, added3)
    facts["undo_after_reopen"] = loop.status.text()
    assert loop.train()  # Train goes on from the saved model
    wait_jobs(loop)
    assert "iteration 4" in loop.status.text() and "warm start" in loop.status.text()
    facts["train_after_reopen"] = loop.status.text()
    expected = ProjectStore.open(store_path).labels("sample").copy()
    viewer.close()
    settle(0.3)
    # the same store through the reader (`napari --plugin napari-hitl project.zarr`)
    viewer = napari.Viewer(show=True)
    viewer.open(str(store_path), plugin="napari-hitl")
    assert (np.asarray(viewer.layers["sample labels"].data) == expected).all()
    log(f"reader: {[ly.name for ly in viewer.layers]}")
    viewer.close()
    settle(0.3)
    # and File ▸ Open Sample again: the sample project is reused, labels included
    viewer = napari.Viewer(show=True)
    viewer.open_sample("napari-hitl", "sample_scene")
    assert (np.asarray(viewer.layers["sample labels"].data) == expected).all()
    facts["open_sample_again_keeps_labels"] = True
    viewer.close()
    settle(0.3)

    # ---------------------------------------------------------------- 12. a Z stack
    stack_demo(facts)

    # ---------------------------------------------------------------- summary
    print("\nShortcut table (docs/user-guide.md):\n")
    table = shortcut_table()
    print(table)
    if GUIDE.exists() and table not in GUIDE.read_text():
        print("\nWARNING: docs/user-guide.md does not hold this shortcut table; update it.")
    print("\nFacts:")
    for k, v in facts.items():
        print(f"  {k}: {v}")
    print("\nScreenshots:")
    for name, kb in SHOTS:
        print(f"  {name}: {kb} KB")
    log("done")
    return 0


def stack_demo(facts: dict[str, object]) -> None:
    """Three slices of sample scenes as one ``CZYX`` image: labels on one slice, predict another
    slice, then the whole stack."""
    from napari_hitl.core.io.rasters import Raster
    from napari_hitl.core.learning.net import TrainConfig
    from napari_hitl.core.sample.scene import make_sample_scene
    from napari_hitl.core.store import add_image
    from napari_hitl.core.store.classes import make_classes

    scenes = [make_sample_scene((128, 128), seed) for seed in range(3)]
    store = ProjectStore.create(
        TMP / "stack.zarr",
        classes=make_classes(scenes[0].class_names, scenes[0].class_colors),
    )
    add_image(
        store,
        Raster(np.stack([s.bands for s in scenes], axis=1), "CZYX", scenes[0].band_names),
        "stack",
        rgb=scenes[0].rgb_bands,
    )
    gt = np.stack([s.ground_truth for s in scenes])
    viewer = napari.Viewer(title="napari-hitl user guide — stack", show=True)
    viewer.window.resize(*WINDOW)
    _pdock, project = viewer.window.add_plugin_dock_widget("napari-hitl", "Project")
    project.open_store(store.path)
    _ldock, loop = viewer.window.add_plugin_dock_widget("napari-hitl", "Learning loop", tabify=True)
    viewer.window.resize(*WINDOW)
    settle(0.5)
    viewer.reset_view()
    layer = viewer.layers["stack labels"]
    painted = np.zeros(gt.shape, np.uint16)
    painted[1] = sparse_scribbles(gt[1], 0.03, seed=0)
    layer.data = painted
    assert loop.stack_combo.isEnabled()
    z_axis = viewer.dims.ndim - 3
    viewer.dims.set_current_step(z_axis, 0)
    assert loop.plane_index() == 0
    assert loop.train(TrainConfig(steps=100))
    wait_jobs(loop)
    assert loop.infer()  # slice 0 only: nobody labeled it
    wait_jobs(loop)
    pred = viewer.layers[result_layer_names("stack")["prediction"]]
    facts["stack_slice_predicted"] = [bool(pred.data[z].any()) for z in range(3)]
    loop.stack_combo.setCurrentIndex(1)  # whole stack
    assert loop.infer()
    wait_jobs(loop)
    facts["stack_whole_predicted"] = [bool(pred.data[z].all()) for z in range(3)]
    viewer.dims.set_current_step(z_axis, 2)
    assert loop.plane_index() == 2
    loop.threshold_slider.setValue(80)
    before = np.asarray(layer.data).copy()
    added = loop.add_predictions()  # the slice on show only
    after = np.asarray(layer.data)
    assert added > 0 and (after[:2] == before[:2]).all() and (after[2] != before[2]).any()
    facts["stack_add_slice2"] = added
    assert loop.undo() == added
    show_only(viewer, {"stack", "stack labels", result_layer_names("stack")["accepted"]})
    viewer.layers.selection.active = layer
    shot(viewer, "12_stack")
    viewer.close()
    settle(0.3)


if __name__ == "__main__":
    try:
        code = main()
    finally:
        if os.environ.get("KEEP_TMP"):
            print(f"temporary files (stores, unscaled screenshots) kept in {TMP}")
        else:
            shutil.rmtree(TMP, ignore_errors=True)
    sys.exit(code)
