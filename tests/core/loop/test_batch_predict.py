"""Batch prediction through dask: seams, resume after interruption, stacks, a dask cluster."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hitl.core.errors import Cancelled, StaleDataError
from napari_hitl.core.evaluation.scribbles import sparse_scribbles
from napari_hitl.core.io.rasters import Raster
from napari_hitl.core.learning.data import TrainingDataError
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.loop import (
    PREDICTION_KEYS,
    load_state,
    predict_project_image,
    push_project_image,
    stored_prediction,
    train_project,
)
from napari_hitl.core.loop import batch as batch_predict
from napari_hitl.core.loop.batch import BATCH_GROUP, predict_store_image
from napari_hitl.core.progress import CancelToken, run_to_end
from napari_hitl.core.sample.scene import make_sample_scene
from napari_hitl.core.store import ProjectStore, add_image
from napari_hitl.core.store.classes import make_classes
from napari_hitl.core.tiling import block_bounds, parse_chunk

FAST = TrainConfig(steps=25)


def _store(tmp_path, shape=(150, 203), model="unet", stack=0):
    """A trained project whose image has NaN pixels (invalid) and an odd size."""
    scenes = [make_sample_scene(shape, seed) for seed in range(max(stack, 1))]
    first = scenes[0]
    store = ProjectStore.create(
        tmp_path / "p.zarr", classes=make_classes(first.class_names, first.class_colors)
    )
    if stack:
        data = np.stack([s.bands for s in scenes], axis=1)
        gt = np.stack([s.ground_truth for s in scenes])
        add_image(store, Raster(data, "CZYX", list(first.band_names)), "img")
    else:
        data = first.bands.copy()
        data[:, 40:47, 60:90] = np.nan
        gt = first.ground_truth
        add_image(store, Raster(data, "CYX", list(first.band_names)), "img")
    labels = np.zeros(gt.shape, np.uint16)
    if stack:
        labels[0] = sparse_scribbles(gt[0], 0.03, seed=0)
    else:
        labels = sparse_scribbles(gt, 0.03, seed=0)
        labels[40:47, 60:90] = 0
    store.write_labels("img", labels)
    run_to_end(train_project(store, TrainConfig(steps=25, model=model)))
    return store


def _stored(store, name="img"):
    state = load_state(store)
    expected = {"model_hash": state.model_hash, "iteration": state.iteration}
    return {k: store.read_derived(name, k, expected) for k in PREDICTION_KEYS}


def _assert_equal_to_memory(store, ref, atol=1e-5):
    got = _stored(store)
    np.testing.assert_allclose(got["probabilities"], ref.probabilities, atol=atol)
    np.testing.assert_allclose(got["confidence"], ref.confidence, atol=atol)
    np.testing.assert_allclose(got["margin"], ref.margin, atol=atol)
    np.testing.assert_allclose(got["entropy"], ref.entropy, atol=10 * atol)
    sure = ref.margin > 1e-4  # a near-tie may flip on float rounding
    np.testing.assert_array_equal(got["prediction"][sure], ref.labels[sure])


# --------------------------------------------------------------------------------- seams
@pytest.mark.parametrize(
    ("model", "reads", "blocks"),
    [("unet", "zarr", 2 * 3), ("unet", "dask", 2 * 3), ("patch-cnn", "zarr", 3 * 3)],
)
def test_blocks_equal_in_memory_prediction(tmp_path, model, reads, blocks):
    """Blocks of 64 px (a short last block merged into the one before) give the whole-image
    prediction: the halo is cut exactly as the in-memory tiling cuts it, NaN pixels included.
    (U-Net: halo 24 + align 4, so tails under 29 px merge; patch CNN: halo 12, tails < 14.)"""
    store = _store(tmp_path, model=model)
    ref = run_to_end(predict_project_image(store, "img", write=False))
    report = run_to_end(predict_store_image(store, "img", chunk=64, halo_reads=reads))
    assert block_bounds(150, 64, 29) == [0, 64, 150]  # 22-px tail merged: it cannot hold a halo
    assert (report.blocks, report.computed, report.skipped) == (blocks, blocks, 0)
    assert report.pixels == 150 * 203
    _assert_equal_to_memory(store, ref)
    assert (_stored(store)["prediction"][40:47, 60:90] == 0).all()  # invalid pixels: no class


def test_batch_result_is_an_ordinary_prediction(tmp_path):
    """After a batch run, push works as after an in-memory prediction and accepts the same
    pixels; the arrays carry the model's signature."""
    store = _store(tmp_path)
    run_to_end(predict_project_image(store, "img"))
    memory = stored_prediction(store, "img")
    run_to_end(predict_store_image(store, "img", chunk=96))
    batch = stored_prediction(store, "img")
    np.testing.assert_array_equal(
        batch["prediction"][batch["confidence"] > 0.6],
        memory["prediction"][batch["confidence"] > 0.6],
    )
    before = store.labels("img")
    record = push_project_image(store, "img", threshold=0.6)
    after = store.labels("img")
    assert record.count > 0
    assert (after[before > 0] == before[before > 0]).all()  # human labels untouched


def test_stack_blocks_equal_slice_predictions(tmp_path):
    store = _store(tmp_path, shape=(70, 90), stack=3)
    ref = run_to_end(predict_project_image(store, "img", write=False))
    report = run_to_end(predict_store_image(store, "img", chunk=64))
    assert report.blocks == 3 * 1 * 1  # 70 and 90 hold one block each (a tail is merged)
    got = _stored(store)
    np.testing.assert_allclose(got["probabilities"], ref.probabilities, atol=1e-5)
    assert stored_prediction(store, "img")["slices"] == [0, 1, 2]


# -------------------------------------------------------------------------------- resume
def test_cancel_then_resume_computes_only_missing_blocks(tmp_path):
    store = _store(tmp_path, shape=(256, 256))
    ref = run_to_end(predict_project_image(store, "img", write=False))
    token = CancelToken()
    seen = []

    def cancel_after_five(report):
        seen.append(report)
        if len(seen) == 5:
            token.cancel()

    with pytest.raises(Cancelled):
        run_to_end(predict_store_image(store, "img", chunk=64, cancel=token), cancel_after_five)
    done = np.asarray(store._image_group("img")[f"hitl/{BATCH_GROUP}/done"][...]).astype(bool)
    assert 5 <= done.sum() < 16
    with pytest.raises(StaleDataError, match="not complete"):  # unfinished: never pushed
        stored_prediction(store, "img")
    report = run_to_end(predict_store_image(store, "img", chunk=64))
    assert report.skipped == int(done.sum())
    assert report.computed == 16 - report.skipped
    _assert_equal_to_memory(store, ref)
    again = run_to_end(predict_store_image(store, "img", chunk=64))
    assert (again.skipped, again.computed) == (16, 0)


def test_block_interrupted_after_writing_is_not_marked_done(tmp_path, monkeypatch):
    """A failure between a block's writes and its mark (a killed worker) leaves it unmarked;
    the next run redoes exactly it and the blocks that had not run."""
    store = _store(tmp_path, shape=(192, 192))
    ref = run_to_end(predict_project_image(store, "img", write=False))
    real = batch_predict._BlockTask.mark_done
    calls = []

    def crash_on_third(hitl, block):
        calls.append(block)
        if len(calls) == 3:
            raise OSError("worker killed")
        real(hitl, block)

    monkeypatch.setattr(batch_predict._BlockTask, "mark_done", staticmethod(crash_on_third))
    with pytest.raises(OSError, match="worker killed"):
        run_to_end(predict_store_image(store, "img", chunk=64, workers=1))
    done = np.asarray(store._image_group("img")[f"hitl/{BATCH_GROUP}/done"][...]).astype(bool)
    assert not done[calls[2]]  # its data are written, but it is not marked
    assert done.sum() == 2
    monkeypatch.setattr(batch_predict._BlockTask, "mark_done", staticmethod(real))
    report = run_to_end(predict_store_image(store, "img", chunk=64))
    assert (report.skipped, report.computed) == (2, 7)
    _assert_equal_to_memory(store, ref)


def test_new_model_or_restart_starts_over(tmp_path):
    store = _store(tmp_path, shape=(128, 128))
    run_to_end(predict_store_image(store, "img", chunk=64))
    assert run_to_end(predict_store_image(store, "img", chunk=64, restart=True)).skipped == 0
    assert run_to_end(predict_store_image(store, "img", chunk=128)).skipped == 0  # other blocks
    run_to_end(train_project(store, TrainConfig(steps=5, warm_steps=5)))
    report = run_to_end(predict_store_image(store, "img", chunk=128))
    assert (report.skipped, report.computed) == (0, 1)
    _stored(store)  # signed by the new model


def test_in_memory_prediction_after_a_batch_run_is_not_resumed_over(tmp_path):
    """An in-memory prediction replaces the arrays; a later batch run must not trust old marks."""
    store = _store(tmp_path, shape=(128, 128))
    run_to_end(predict_store_image(store, "img", chunk=64))
    run_to_end(predict_project_image(store, "img", region=(0, 10, 0, 10)))
    assert run_to_end(predict_store_image(store, "img", chunk=64)).skipped == 0


# -------------------------------------------------------------------------------- errors
def test_bad_chunks_and_missing_model(tmp_path):
    assert parse_chunk("1000", align=4) == (1000, 1000)
    assert parse_chunk("510,2048", align=4) == (512, 2048)
    for bad in ("0", "abc", "32", "1,2,3"):
        with pytest.raises(ValueError, match="at least 64"):
            parse_chunk(bad)
    scene = make_sample_scene((64, 64), 0)
    store = ProjectStore.create(
        tmp_path / "e.zarr", classes=make_classes(scene.class_names, scene.class_colors)
    )
    add_image(store, Raster(scene.bands, "CYX", list(scene.band_names)), "img")
    with pytest.raises(TrainingDataError, match="train first"):
        run_to_end(predict_store_image(store, "img"))


# ---------------------------------------------------------------------------- a cluster
@pytest.mark.slow
def test_distributed_local_cluster_equals_in_memory(tmp_path):
    """Workers in other processes open the store by path and load the model by hash."""
    distributed = pytest.importorskip("distributed")
    store = _store(tmp_path, shape=(140, 140))
    ref = run_to_end(predict_project_image(store, "img", write=False))
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        messages = []
        report = run_to_end(
            predict_store_image(store, "img", chunk=64, scheduler=client), messages.append
        )
        address = cluster.scheduler_address
        # by address, as the CLI does: everything is done already
        again = run_to_end(predict_store_image(store, "img", chunk=64, scheduler=address))
    assert (report.computed, report.blocks) == (4, 4)
    assert [m.done for m in messages] == [1, 2, 3, 4]
    assert (again.skipped, again.computed) == (4, 0)
    _assert_equal_to_memory(store, ref)


# ---------------------------------------------------------------------------------- CLI
def test_cli_predict_runs_in_blocks_and_resumes(tmp_path, capsys, monkeypatch):
    from napari_hitl.cli import main

    store = _store(tmp_path, shape=(128, 128))
    path = str(store.path)
    assert main(["predict", path, "--chunk", "64"]) == 0
    out = capsys.readouterr().out
    assert "img: 4 of 4 blocks computed" in out and "Mpx/s" in out and "confidence ≥ 0.95" in out
    assert main(["predict", path, "--chunk", "64"]) == 0
    assert "0 of 4 blocks computed, 4 done before" in capsys.readouterr().out
    _stored(ProjectStore.open(path))
    assert main(["predict", path, "--chunk", "16"]) == 2
    assert "at least 64" in capsys.readouterr().err
    monkeypatch.setattr(batch_predict, "CONNECT_TIMEOUT", "1s")
    assert main(["predict", path, "--restart", "--scheduler", "tcp://127.0.0.1:9"]) == 2
    assert "cannot reach the dask scheduler" in capsys.readouterr().err
    _stored(ProjectStore.open(path))  # the failed --restart touched nothing
