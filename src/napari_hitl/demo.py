"""The README's main job: the sample scene through napari-hitl, with or without a display.

* With a display (``--mode gui``, or ``auto`` when ``$DISPLAY`` is set outside CI): opens napari
  with the sample project and the plugin's widgets, and waits for the user.
* Headless (``--mode headless``): runs three iterations of the loop on the sample project
  (:func:`run_store_loop`), shows the same viewer on the (virtual) display with its labels and
  prediction, saves a screenshot and exits. Without a display it re-runs itself under
  ``xvfb-run`` when installed, and without Qt or Xvfb it still writes the store and a
  matplotlib overview.

Everything lands in the output folder: ``sample_scene.zarr``, ``scene.png`` (composite, ground
truth, DSM), ``loop/report.json`` and ``loop/curves.png`` (the learning loop run by a simulated
user on sample scenes), ``viewer.png`` (screenshot of napari) and ``summary.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_hitl.core.choices import DEMO_LOOP_ITERATIONS
from napari_hitl.core.sample.store import GROUND_TRUTH, SAMPLE_IMAGE, build_sample_store
from napari_hitl.core.store import ProjectStore

if TYPE_CHECKING:
    from napari_hitl.core.evaluation.simulate import Sample, SimulationConfig
    from napari_hitl.core.learning.config import TrainConfig


def _has_gui_stack() -> bool:
    try:
        import napari  # noqa: F401
        import qtpy  # noqa: F401
    except Exception:
        return False
    return True


def save_overview(store: ProjectStore, name: str, path: Path) -> Path:
    """Composite, ground truth and DSM side by side (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    from napari_hitl._napari.layers import rgb_composite

    info = store.image_info(name)
    bands = np.asarray(store.image(name)[...])
    panels: list[tuple[str, Any, dict[str, Any]]] = [
        ("RGB composite", np.asarray(rgb_composite(bands, info.bands, info.rgb)), {})
    ]
    if GROUND_TRUTH in store.derived_keys(name):
        classes = store.classes
        cmap = ListedColormap(["#000000"] + [c.color for c in classes])
        gt = store.read_derived(name, GROUND_TRUTH)
        panels.append(
            (
                "ground truth: " + ", ".join(c.name for c in classes),
                gt,
                {"cmap": cmap, "vmin": 0, "vmax": len(classes), "interpolation": "nearest"},
            )
        )
    if info.dsm_band is not None:
        panels.append(
            (f"{info.band_names[info.dsm_band]} (m)", bands[info.dsm_band], {"cmap": "terrain"})
        )
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5.3))
    for ax, (title, img, kw) in zip(np.atleast_1d(axes), panels, strict=True):
        im = ax.imshow(img, **kw)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        if "terrain" in str(kw.get("cmap")):
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def open_viewer(store: ProjectStore, show: bool = True) -> Any:
    """A napari viewer with the sample project loaded and the plugin's widgets docked."""
    import napari

    from napari_hitl._napari.layers import direct_colormap, store_image_layers

    viewer = napari.Viewer(title="napari-hitl — sample scene", show=show)
    viewer.window.resize(1500, 950)
    for data, kwargs, kind in store_image_layers(store, SAMPLE_IMAGE):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    viewer.add_labels(
        store.read_derived(SAMPLE_IMAGE, GROUND_TRUTH),
        name="ground truth",
        visible=False,
        opacity=0.5,
        colormap=direct_colormap(store.classes),
    )
    predicted = _stored_prediction(store)
    if predicted is not None:  # the demo ran the loop on the project: show what it predicted
        viewer.add_image(
            predicted["confidence"],
            name=f"{SAMPLE_IMAGE} confidence",
            colormap="magma",
            contrast_limits=(0.0, 1.0),
            visible=False,
        )
        viewer.add_labels(
            predicted["prediction"],
            name=f"{SAMPLE_IMAGE} prediction",
            opacity=0.6,
            colormap=direct_colormap(store.classes),
        )
        labels = viewer.layers[f"{SAMPLE_IMAGE} labels"]
        viewer.layers.move(viewer.layers.index(labels), len(viewer.layers))
    viewer.window.add_plugin_dock_widget("napari-hitl", "Project")
    viewer.layers.selection.active = viewer.layers[f"{SAMPLE_IMAGE} labels"]
    return viewer


def _stored_prediction(store: ProjectStore) -> dict[str, Any] | None:
    """The current model's stored prediction of the sample, or None before any."""
    from napari_hitl.core.errors import HitlError
    from napari_hitl.core.loop import stored_prediction

    try:
        return stored_prediction(store, SAMPLE_IMAGE)
    except HitlError:
        return None


def sample_loop_inputs(
    iterations: int = DEMO_LOOP_ITERATIONS,
    n_images: int = 8,
    size: int = 256,
    first_seed: int = 100,
    train: TrainConfig | None = None,
) -> tuple[list[Sample], SimulationConfig]:
    """The scenes and simulation settings of :func:`run_sample_loop` (``Sample`` list and
    ``SimulationConfig``): ``n_images`` sample scenes of ``size``² drawn with seeds
    ``first_seed``, ``first_seed + 1``, …; ``train``: a ``TrainConfig`` (``None``: the
    default). ``benchmarks/demo_swing.py`` runs the same loop under probes from here."""
    from napari_hitl.core.evaluation.simulate import Sample, SimulationConfig
    from napari_hitl.core.sample.scene import make_sample_scene

    samples = []
    for i in range(n_images):
        scene = make_sample_scene((size, size), seed=first_seed + i)
        samples.append(Sample(f"scene_{i}", scene.bands, scene.ground_truth.astype(np.int64)))
    config = SimulationConfig(
        iterations=iterations, seed_images=3, scribble_fraction=0.02, interaction="correct"
    )
    if train is not None:
        config.train = train
    return samples, config


def run_sample_loop(
    out: Path, iterations: int = DEMO_LOOP_ITERATIONS, n_images: int = 8, size: int = 256
) -> dict[str, Any]:
    """The learning loop on sample scenes, driven by the benchmark's corrective user.

    Three of the ``n_images`` scenes get seed scribbles (2 % of their pixels), two are kept for
    testing; then each iteration trains, accepts the predictions at ≥ 95 % confidence into the
    pool's labels and lets the simulated person paint over what is still wrong or missing
    (0.5 % of the pool per iteration, ``--interaction correct``): the loop as a person runs it.
    Writes ``OUT/report.json`` and ``OUT/curves.png`` and returns a short summary.
    """
    from napari_hitl.core.evaluation.simulate import simulate, write_report
    from napari_hitl.core.progress import run_to_end

    samples, config = sample_loop_inputs(iterations, n_images, size)
    t0 = time.perf_counter()
    report = run_to_end(simulate(samples, config))
    report_path, curves_path = write_report(report, out)
    first, last = report["iterations"][0], report["iterations"][-1]
    print(
        f"loop: {len(report['iterations'])} iterations in {time.perf_counter() - t0:.0f} s; "
        f"test mIoU {first['test_miou']:.3f} → {last['test_miou']:.3f}; labeled "
        f"{first['labeled_fraction']:.0%} → {last['labeled_fraction']:.0%} of the pool at "
        f"{last['label_accuracy']:.1%} accuracy, {last['human_fraction']:.1%} painted by hand"
    )
    return {"report": str(report_path), "curves": str(curves_path), "last_iteration": last}


def run_store_loop(
    store: ProjectStore, iterations: int = 3, scribbles: float = 0.005
) -> list[dict[str, Any]]:
    """The loop on the sample project itself, as a person would run it in the widget.

    Scribbles ``scribbles`` of the scene's pixels from its ground truth, then ``iterations``
    times: Train, Infer, Add predictions (confidence ≥ 0.95, 1 px margin), and — between
    iterations — a corrective stroke pass over what is still wrong or missing (0.5 % of the
    scene). The labels, the model and the last prediction stay in the store, so the viewer
    opens on them. Returns one summary per iteration.
    """
    from napari_hitl.core.evaluation.corrective import correct_pool
    from napari_hitl.core.evaluation.scribbles import sparse_scribbles
    from napari_hitl.core.evaluation.simulate import CORRECTION_SHARE
    from napari_hitl.core.loop import predict_project_image, push_project_image, train_project
    from napari_hitl.core.progress import run_to_end

    truth = store.read_derived(SAMPLE_IMAGE, GROUND_TRUTH).astype(np.int64)
    store.write_labels(SAMPLE_IMAGE, sparse_scribbles(truth, scribbles, seed=0).astype(np.uint16))
    has_truth = truth > 0
    budget = max(1, round(CORRECTION_SHARE * has_truth.sum()))  # as the benchmark's person
    rows = []
    for it in range(1, iterations + 1):
        if it > 1:
            labels, prov = store.labels(SAMPLE_IMAGE), store.provenance(SAMPLE_IMAGE)
            correct_pool([truth], [labels], [prov], budget, np.random.default_rng(it))
            store.write_labels(SAMPLE_IMAGE, labels, prov)
        report, state = run_to_end(train_project(store))
        pred = run_to_end(predict_project_image(store, SAMPLE_IMAGE, state))
        pushed = push_project_image(store, SAMPLE_IMAGE, state=state)
        labels = store.labels(SAMPLE_IMAGE)
        labeled = (labels > 0) & has_truth
        rows.append(
            {
                "iteration": it,
                "accepted_pixels": int(pushed.count),
                "labeled_fraction": float(labeled.sum() / has_truth.sum()),
                "label_accuracy": float((labels[labeled] == truth[labeled]).mean()),
                "prediction_accuracy": float((pred.labels[has_truth] == truth[has_truth]).mean()),
                "train_seconds": round(report.seconds, 2),
            }
        )
        r = rows[-1]
        print(
            f"sample project, iteration {it}: labeled {r['labeled_fraction']:.0%} at "
            f"{r['label_accuracy']:.1%} accuracy; prediction {r['prediction_accuracy']:.1%} right"
        )
    return rows


def run_demo(
    out: Path, mode: str = "auto", size: int = 512, loop_iterations: int = DEMO_LOOP_ITERATIONS
) -> int:
    """Build the sample project in ``out`` and show it (see the module docstring)."""
    out = Path(out).resolve()
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if mode == "auto":
        mode = "gui" if has_display and not os.environ.get("CI") else "headless"
    if mode == "headless" and not has_display and _has_gui_stack() and shutil.which("xvfb-run"):
        cmd = [
            "xvfb-run",
            "-a",
            "-s",
            "-screen 0 1600x1000x24",
            sys.executable,
            "-m",
            "napari_hitl.cli",
            "demo",
            "--mode",
            "headless",
            "--out",
            str(out),
            "--size",
            str(size),
            "--loop-iterations",
            str(loop_iterations),
        ]
        print("no display: re-running under Xvfb", flush=True)
        return subprocess.call(cmd)

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    store = build_sample_store(out / "sample_scene.zarr", shape=(size, size), overwrite=True)
    summary: dict[str, Any] = {
        "store": str(store.path),
        "store_seconds": round(time.perf_counter() - t0, 2),
        "store_summary": store.summary(),
        "overview": str(save_overview(store, SAMPLE_IMAGE, out / "scene.png")),
    }
    print(f"wrote {store.path} and {summary['overview']}")
    if loop_iterations > 0:
        summary["loop"] = run_sample_loop(out / "loop", loop_iterations)
        if mode != "gui":  # with a display the person paints the project's labels herself
            summary["project_loop"] = run_store_loop(store)

    if mode == "gui":
        import napari

        viewer = open_viewer(store, show=True)
        print("napari is open: paint into 'sample labels', see docs/user-guide.md", flush=True)
        napari.run()
        viewer.close()
    elif has_display and _has_gui_stack():
        viewer = open_viewer(store, show=True)
        from qtpy.QtWidgets import QApplication

        for _ in range(5):  # let the dock widgets lay out before the screenshot
            QApplication.processEvents()
            time.sleep(0.05)
        shot = viewer.screenshot(path=str(out / "viewer.png"), canvas_only=False, flash=False)
        summary["screenshot"] = str(out / "viewer.png")
        summary["screenshot_shape"] = list(shot.shape)
        viewer.close()
        print(f"wrote {out / 'viewer.png'}")
    else:
        summary["screenshot"] = None
        print("no display and no Xvfb/Qt: skipped the napari screenshot (install xvfb for it)")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"results in {out}")
    return 0
