"""The README's main job, headless: the sample store and a real screenshot of the viewer."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import pytest

from napari_hitl.core.store import ProjectStore


@pytest.mark.gui
@pytest.mark.slow
def test_demo_headless_writes_store_and_screenshot(tmp_path):
    out = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "napari_hitl.cli",
            "demo",
            "--mode",
            "headless",
            "--out",
            str(out),
            "--size",
            "192",
            "--loop-iterations",
            "2",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    store = ProjectStore.open(out / "sample_scene.zarr")
    assert store.image_names() == ["sample"] and store.image_info("sample").shape == (15, 192, 192)
    assert (out / "scene.png").stat().st_size > 10_000
    loop = json.loads((out / "loop" / "report.json").read_text())
    assert [r["iteration"] for r in loop["iterations"]] == [1, 2]
    assert (
        loop["iterations"][-1]["labeled_fraction"]
        > loop["iterations"][0]["labeled_fraction"] * 0.99
    )
    assert (out / "loop" / "curves.png").exists()
    project = summary["project_loop"]  # the loop on the sample project itself
    assert [r["iteration"] for r in project] == [1, 2, 3]
    labeled = [r["labeled_fraction"] for r in project]
    # The first Train already pushes about half the scene (47-55 % at 96-99 % right, 1 and 2
    # threads; ~1 % before a new network trained 320 steps), so the rise over the next two
    # iterations is 0.17-0.26 and the scene ends 0.73 labeled.
    assert labeled[-1] > 0.6 and labeled[-1] > labeled[0] + 0.1
    assert all(b >= a for a, b in itertools.pairwise(labeled))
    # Pushes need 95 % confidence; the labels measured 0.955-0.973 right (1 and 2 threads), so
    # 0.95 had no margin for another CPU's rounding. Wrong pushes (< 0.93) still fail.
    assert all(r["label_accuracy"] > 0.93 for r in project)
    assert store.labels("sample").any() and (store.provenance("sample") > 0).any()
    if summary["screenshot"] is None:
        pytest.skip("no display and no Xvfb here: the screenshot step was skipped")
    import imageio.v3 as iio

    shot = iio.imread(out / "viewer.png")
    assert shot.shape[0] > 500 and shot.shape[1] > 1000
    assert shot[..., :3].std() > 20  # real pixels, not a blank window
