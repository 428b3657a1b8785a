"""What each Train records in the store (effort so far, held-out accuracy) and ``napari-hitl
history``: exact counts on strokes we paint ourselves, the CLI reproducing the records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_hitl.cli import main
from napari_hitl.core.errors import StoreError
from napari_hitl.core.io.rasters import Raster
from napari_hitl.core.learning.data import LabeledImage
from napari_hitl.core.learning.net import TrainConfig, TrainReport, calibrate
from napari_hitl.core.loop import predict_project_image, push_project_image, train_project
from napari_hitl.core.loop.history import (
    HISTORY_FIELDS,
    count_strokes,
    plane_effort,
    project_effort,
)
from napari_hitl.core.progress import run_to_end
from napari_hitl.core.sample.scene import make_sample_scene
from napari_hitl.core.store import ProjectStore, add_image, machine_provenance
from napari_hitl.core.store.classes import make_classes

FAST = TrainConfig(steps=12, warm_steps=6)
N = 64
PIXELS = N * N + 2 * N * N  # a 2-D image and a 2-slice stack


def _strokes() -> tuple[np.ndarray, int, int]:
    """Labels of the 2-D image: 3 strokes of class 1, 3 of class 2 (one of them two boxes
    touching only at a corner: one 8-connected stroke), and a class-1 stroke touching a class-2
    stroke (two strokes). Returns (labels, pixels, strokes)."""
    lab = np.zeros((N, N), np.uint16)
    lab[4:8, 4:12] = 1  # 32 px
    lab[20:24, 4:12] = 1  # 32 px
    lab[40:44, 4:12] = 1  # 32 px
    lab[4:8, 40:48] = 2  # 32 px
    lab[20:24, 40:48] = 2  # 32 px
    lab[40:44, 40:48] = 2  # 32 px, and diagonally touching it:
    lab[44:48, 48:56] = 2  # 32 px: the same stroke
    lab[56:60, 20:28] = 1  # 32 px, beside
    lab[56:60, 28:36] = 2  # 32 px: two strokes (other class)
    return lab, int((lab > 0).sum()), 3 + 1 + 3 + 1


@pytest.fixture
def project(tmp_path):
    scene = make_sample_scene((N, N), 0)
    store = ProjectStore.create(
        tmp_path / "h.zarr", classes=make_classes(scene.class_names, scene.class_colors)
    )
    bands = list(scene.band_names)
    add_image(store, Raster(scene.bands, "CYX", bands), "flat")
    stack = np.stack([make_sample_scene((N, N), s).bands for s in (1, 2)], axis=1)
    add_image(store, Raster(stack, "CZYX", bands), "vol")
    labels, pixels, strokes = _strokes()
    store.write_labels("flat", labels)
    return store, pixels, strokes


def test_two_trains_record_exact_effort(project):
    store, pixels, strokes = project
    assert store.history() == []
    report1, state1 = run_to_end(train_project(store, FAST))
    (rec1,) = store.history()
    assert set(rec1) == set(HISTORY_FIELDS)
    assert rec1["train"] == 1 and rec1["iteration"] == state1.iteration == 1
    assert rec1["model"] == state1.classifier.kind and rec1["warm_start"] is False
    assert rec1["pixels"] == PIXELS
    assert rec1["human_pixels"] == pixels and rec1["human_strokes"] == strokes
    assert rec1["labeled_fraction"] == pixels / PIXELS and rec1["machine_fraction"] == 0.0
    assert rec1["holdout_pixels"] == report1.holdout_pixels >= 20
    assert 0.0 <= rec1["holdout_accuracy"] <= 1.0
    assert rec1["holdout_accuracy"] == report1.holdout_accuracy
    assert rec1["temperature"] == report1.temperature and rec1["train_seconds"] > 0
    # push machine labels into the 2-D image, then paint a new stroke into slice 1 of the stack
    run_to_end(predict_project_image(store, "flat"))
    pushed = push_project_image(store, "flat", threshold=0.5, margin=0).count
    assert pushed > 0
    vol = store.labels("vol")
    vol[1, 10:13, 10:20] = 3  # 30 px, one stroke
    assert store.save_edited_labels("vol", vol) == 30
    report2, state2 = run_to_end(train_project(store, FAST))
    rec1_again, rec2 = store.history()
    assert rec1_again == rec1  # earlier records are kept as they were
    assert rec2["train"] == 2 and rec2["iteration"] == state2.iteration == 2 and rec2["warm_start"]
    assert rec2["human_pixels"] == pixels + 30 and rec2["human_strokes"] == strokes + 1
    assert rec2["machine_fraction"] == pushed / PIXELS
    assert int((store.provenance("flat") == machine_provenance(1)).sum()) == pushed
    assert rec2["labeled_fraction"] == (pixels + 30 + pushed) / PIXELS
    assert rec2["holdout_accuracy"] is None or 0.0 <= rec2["holdout_accuracy"] <= 1.0
    assert rec2["holdout_pixels"] == report2.holdout_pixels
    # the CLI reproduces what Train recorded
    assert ProjectStore.open(store.path).history() == [rec1, rec2]  # persisted


def test_history_cli(project, tmp_path, capsys):
    store, _pixels, _strokes = project
    path = str(store.path)
    assert main(["history", path]) == 0
    assert "no Train recorded yet" in capsys.readouterr().out
    assert main(["history", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    run_to_end(train_project(store, FAST))
    run_to_end(train_project(store, FAST))
    assert main(["history", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == store.history()
    png = tmp_path / "history.png"
    assert main(["history", path, "--plot", str(png)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["train", "iter", "model"]
    rows = [line.split() for line in out[1:3]]
    for row, rec in zip(rows, store.history(), strict=True):
        assert row[:5] == [str(rec["train"]), str(rec["iteration"]), rec["model"],
                           str(rec["human_pixels"]), str(rec["human_strokes"])]  # fmt: skip
    assert out[3] == f"wrote {png}"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # --json keeps stdout pure JSON even with --plot
    assert main(["history", path, "--json", "--plot", str(png)]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_history_cli_refusals(tmp_path, capsys):
    assert main(["history", str(tmp_path / "missing.zarr")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a napari-hitl project store" in err
    store = ProjectStore.create(tmp_path / "e.zarr")
    assert main(["history", str(store.path), "--plot", str(tmp_path / "no" / "h.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_store_history_writes_are_checked(tmp_path):
    store = ProjectStore.create(tmp_path / "s.zarr")
    store.append_history({"train": 1, "human_pixels": 5})
    with pytest.raises(ValueError, match="plain JSON"):
        store.append_history({"x": object()})
    with pytest.raises(ValueError, match="plain JSON"):
        store.append_history({"x": float("nan")})
    read_only = ProjectStore.open(store.path)
    assert read_only.history() == [{"train": 1, "human_pixels": 5}]
    with pytest.raises(StoreError, match="read-only"):
        read_only.append_history({"train": 2})


def test_tiled_counting_equals_whole_plane(rng):
    """Big planes are scanned tile by tile; strokes crossing tiles are counted once."""
    labels = np.zeros((2, 100, 90), np.uint16)
    prov = np.zeros_like(labels)
    labels[1] = rng.integers(0, 3, (100, 90)) * (rng.random((100, 90)) < 0.3)
    labels[1, 5:95, 40] = 1  # a long stroke across many tiles
    labels[1, 50, 0:90] = 2
    prov[1] = np.where(labels[1] > 0, 1, 0)
    prov[1, :30][labels[1, :30] > 0] = 2  # machine labels in the top part
    whole = plane_effort(labels, prov, 1)
    tiled = plane_effort(labels, prov, 1, tile=16, whole_max=0)
    assert whole == tiled
    assert whole.human == int((prov[1] == 1).sum()) and whole.machine == int((prov[1] == 2).sum())
    assert whole.strokes == count_strokes(labels[1], prov[1] == 1)
    assert plane_effort(labels, prov, 0, tile=16, whole_max=0).pixels == 100 * 90


def test_count_strokes_is_8_connected_per_class():
    lab = np.zeros((6, 6), np.uint16)
    lab[0, 0] = lab[1, 1] = 1  # diagonal: one stroke
    lab[3, 3] = 1
    lab[3, 4] = 2  # touching, other class: two more
    assert count_strokes(lab, lab > 0) == 3
    assert count_strokes(lab, np.zeros_like(lab, bool)) == 0


def test_holdout_accuracy_matches_prediction_argmax():
    """calibrate's holdout accuracy is the argmax of the classifier's logits (prior included)."""

    class Fixed:
        temperature = 1.0

        def logits(self, x: np.ndarray) -> np.ndarray:
            return x  # the "logits" are the image itself, prior already added

    logits = np.zeros((2, 5, 5), np.float32)
    logits[1, :2] = 1.0  # rows 0-1 predict class 1, the rest class 0
    target = np.full((5, 5), -1)
    target[:4] = 1  # held out: rows 0-3, class 1 → 10 of 20 right
    im = LabeledImage("a", logits, target, np.ones((5, 5), np.float32), {})
    held = [(0, np.flatnonzero(target >= 0))]
    report = TrainReport(1, 0.0, 0.0, [0, 20], holdout_pixels=20, temperature=1.0)
    calibrate(Fixed(), [im], held, report)
    assert report.holdout_accuracy == 0.5
    few = TrainReport(1, 0.0, 0.0, [0, 19], holdout_pixels=19, temperature=1.0)
    calibrate(Fixed(), [im], [(0, held[0][1][:19])], few)
    assert few.holdout_accuracy is None


def test_project_effort_of_an_empty_project(tmp_path):
    effort = project_effort(ProjectStore.create(tmp_path / "z.zarr"))
    assert effort.pixels == 0 and effort.labeled_fraction == 0.0
