"""The row-position cue (``TrainConfig.row_position``): each pixel's height in its image as one
more input channel, the same in whole images, tiles, windows and dask blocks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_hitl.cli import main
from napari_hitl.core.evaluation.scribbles import sparse_scribbles
from napari_hitl.core.io.rasters import Raster
from napari_hitl.core.learning.data import (
    ROW_POSITION_CHANNEL,
    LabeledImage,
    Normalization,
    row_position,
)
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.learning.registry import make_classifier
from napari_hitl.core.loop import predict_project_image, train_project
from napari_hitl.core.loop.batch import predict_store_image
from napari_hitl.core.progress import run_to_end
from napari_hitl.core.sample.scene import make_sample_scene
from napari_hitl.core.store import ProjectStore, add_image
from napari_hitl.core.store.classes import make_classes


def test_the_cue_is_the_row_height_in_windows_and_stacks_alike(rng):
    norm = Normalization(["a", "b"], [0.0, 0.0], [1.0, 1.0], row_position=True)
    bands = rng.random((2, 40, 7)).astype(np.float32)
    whole = norm.apply(bands)
    assert whole.shape == (3, 40, 7) and norm.channel_names == ["a", "b", ROW_POSITION_CHANNEL]
    np.testing.assert_allclose(whole[2, :, 3], (np.arange(40) + 0.5) / 40)
    window = norm.apply(bands[:, 12:30], rows=(12, 40))  # a window knows where it lies
    np.testing.assert_array_equal(window, whole[:, 12:30])
    valid = np.ones((40, 7), bool)
    valid[5] = False  # invalid pixels lose their bands, not their row
    masked = norm.apply(bands, valid)
    assert (masked[:2, 5] == 0).all() and masked[2, 5, 0] == whole[2, 5, 0]
    stack = row_position((3, 10, 4), (10, 20))  # Z, H, W: every slice the same rows
    assert stack.shape == (3, 10, 4) and np.allclose(stack[:, :, 0], (np.arange(10, 20) + 0.5) / 20)
    plain = Normalization(["a", "b"], [0.0, 0.0], [1.0, 1.0])
    assert plain.apply(bands).shape == (2, 40, 7)  # off by default


def test_the_cue_is_kept_with_the_model_and_old_models_have_none():
    norm = Normalization(["a"], [0.0], [2.0], row_position=True)
    assert Normalization.from_json(json.loads(json.dumps(norm.to_json()))) == norm
    saved_before = {"band_names": ["a"], "low": [0.0], "high": [2.0]}
    assert Normalization.from_json(saved_before).row_position is False


def _halves(rng, n: int, size: int = 96) -> list[LabeledImage]:
    """Images of pure noise whose top half is class 0 and bottom half class 1: nothing but a
    pixel's row tells them apart (reflect padding hides the image border)."""
    target = np.zeros((size, size), np.int64)
    target[size // 2 :] = 1
    out = []
    for i in range(n):
        x = rng.random((1, size, size)).astype(np.float32)
        strokes = np.full((size, size), -1, np.int64)
        strokes[::7, ::5] = target[::7, ::5]  # sparse dots of both classes
        out.append(
            LabeledImage(f"n{i}", x, strokes, (strokes >= 0).astype(np.float32), {"truth": target})
        )
    return out


@pytest.mark.parametrize("cue", [False, True])
def test_a_class_only_the_row_tells_is_learned_with_the_cue_alone(rng, cue):
    """Held-out pixels ≥ 24 px from the border and ≥ 8 px from the class change: with the cue
    the U-Net gets them right, without it it can only guess (1 thread, seeds 0-2: 1.00 and
    0.47-0.50)."""
    norm = Normalization(["noise"], [0.0], [1.0], row_position=cue)
    images = _halves(rng, 3)
    for im in images:  # what the loop trains on: the normalized bands (and the cue)
        im.x = norm.apply(im.x)
    clf = make_classifier("unet", norm, [1, 2], ["top", "bottom"])
    run_to_end(clf.fit(images, TrainConfig(steps=160, holdout_fraction=0.0, threads=2)))
    test = _halves(rng, 1)[0]
    pred = clf.logits(norm.apply(test.x)).argmax(0)
    rows = np.r_[24:40, 56:72]  # away from the border and from the change at row 48
    accuracy = float((pred[rows, 24:72] == test.extra["truth"][rows, 24:72]).mean())
    assert accuracy > 0.9 if cue else accuracy < 0.75


def _project(tmp_path) -> ProjectStore:
    scene = make_sample_scene((150, 203), 0)
    store = ProjectStore.create(
        tmp_path / "p.zarr", classes=make_classes(scene.class_names, scene.class_colors)
    )
    add_image(store, Raster(scene.bands, "CYX", list(scene.band_names)), "img")
    store.write_labels("img", sparse_scribbles(scene.ground_truth, 0.03, seed=0))
    return store


def test_blocks_windows_and_the_whole_image_see_the_same_rows(tmp_path):
    """dask blocks (map_overlap halos and reads from the store) predict what the whole image
    does: each window's cue is its rows in the image, not in the window."""
    store = _project(tmp_path)
    run_to_end(train_project(store, TrainConfig(steps=25, row_position=True, threads=2)))
    ref = run_to_end(predict_project_image(store, "img", write=False))
    for reads in ("dask", "zarr"):
        run_to_end(predict_store_image(store, "img", chunk=64, halo_reads=reads, restart=True))
        got = store.read_derived("img", "probabilities")
        np.testing.assert_allclose(got, ref.probabilities, atol=1e-5)


def test_the_command_line_trains_with_the_cue_and_a_change_starts_afresh(tmp_path, capsys):
    store = _project(tmp_path)
    path = str(store.path)
    run = ["train", path, "--steps", "10", "--threads", "1", "--json"]
    assert main([*run, "--row-position"]) == 0
    first = json.loads(capsys.readouterr().out)
    config = ProjectStore.open(path).model_config("latest")
    assert config["normalization"]["row_position"] is True
    assert main([*run, "--row-position"]) == 0  # the same setting continues the model
    assert json.loads(capsys.readouterr().out)["warm_start"]
    assert main(run) == 0  # without the cue: another input, so a new model (as for new bands)
    off = json.loads(capsys.readouterr().out)
    assert not off["warm_start"] and first["iteration"] == off["iteration"] == 1
    assert ProjectStore.open(path).model_config("latest")["normalization"]["row_position"] is False


def test_explanations_and_guiding_run_on_a_model_with_the_cue(tmp_path):
    """Grad-CAM and band attribution name the cue's channel; a guiding session predicts what
    the loop predicts (its input carries the cue too)."""
    from napari_hitl.core.explain.project import explain_project_image
    from napari_hitl.core.hints.project import open_session

    store = _project(tmp_path)
    run_to_end(train_project(store, TrainConfig(steps=10, row_position=True, threads=2)))
    explained = run_to_end(explain_project_image(store, "img", 1, attribution="occlusion"))
    names = [name for name, *_ in explained.attribution.ranking()]
    assert sorted(names) == sorted([*store.image_info("img").band_names, ROW_POSITION_CHANNEL])
    session = run_to_end(open_session(store, "img"))
    ref = run_to_end(predict_project_image(store, "img", write=False))
    np.testing.assert_array_equal(session.plain.labels, ref.labels)


def test_stack_blocks_see_their_rows_like_the_slices(tmp_path):
    """A Z stack with the cue: every slice gets the same rows, and blocks of 64 rows predict
    what each whole slice does."""
    scenes = [make_sample_scene((150, 90), seed) for seed in range(3)]
    store = ProjectStore.create(
        tmp_path / "s.zarr", classes=make_classes(scenes[0].class_names, scenes[0].class_colors)
    )
    data = np.stack([s.bands for s in scenes], axis=1)
    add_image(store, Raster(data, "CZYX", list(scenes[0].band_names)), "img")
    labels = np.zeros((3, 150, 90), np.uint16)
    labels[0] = sparse_scribbles(scenes[0].ground_truth, 0.03, seed=0)
    store.write_labels("img", labels)
    run_to_end(train_project(store, TrainConfig(steps=10, row_position=True, threads=2)))
    ref = run_to_end(predict_project_image(store, "img", write=False))
    report = run_to_end(predict_store_image(store, "img", chunk=64))
    assert report.blocks == 3 * 2  # 150 rows: a block of 64 and one of 86 (the tail merged)
    got = store.read_derived("img", "probabilities")
    np.testing.assert_allclose(got, ref.probabilities, atol=1e-5)
