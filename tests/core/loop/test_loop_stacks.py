"""The loop on stacks (CZYX), region-limited inference and band subsets."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hitl.cli import main
from napari_hitl.core.errors import StaleDataError
from napari_hitl.core.evaluation.scribbles import sparse_scribbles
from napari_hitl.core.io.rasters import Raster
from napari_hitl.core.learning.data import IncompatibleBandsError, StackIndexError
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.loop import (
    load_state,
    normalized_window,
    predict_project_image,
    project_normalization,
    push_project_image,
    stored_prediction,
    train_project,
    training_images,
)
from napari_hitl.core.loop.accept import push_history, store_undo
from napari_hitl.core.progress import CancelToken, run_to_end
from napari_hitl.core.sample.scene import make_sample_scene
from napari_hitl.core.sample.store import build_sample_store
from napari_hitl.core.store import PROVENANCE_HUMAN, ProjectStore, add_image, machine_provenance
from napari_hitl.core.store.classes import make_classes

FAST = TrainConfig(steps=30, warm_steps=10)
DEPTH = 3


@pytest.fixture
def stack(tmp_path):
    """A 3-slice CZYX stack of sample scenes; slices 0 and 2 have scribbles, slice 1 none."""
    scenes = [make_sample_scene((64, 64), seed) for seed in range(DEPTH)]
    store = ProjectStore.create(
        tmp_path / "s.zarr", classes=make_classes(scenes[0].class_names, scenes[0].class_colors)
    )
    data = np.stack([s.bands for s in scenes], axis=1)
    add_image(store, Raster(data, "CZYX", list(scenes[0].band_names)), "vol")
    gt = np.stack([s.ground_truth for s in scenes])
    labels = np.zeros(gt.shape, np.uint16)
    labels[0] = sparse_scribbles(gt[0], 0.05, seed=0)
    labels[2] = sparse_scribbles(gt[2], 0.05, seed=2)
    store.write_labels("vol", labels)
    return store, gt


@pytest.fixture
def flat(tmp_path):
    """The 96 × 96 sample scene with 3 % scribbles."""
    store = build_sample_store(tmp_path / "p.zarr", shape=(96, 96))
    gt = store.read_derived("sample", "ground_truth")
    store.write_labels("sample", sparse_scribbles(gt, 0.03, seed=0))
    return store, gt


def _accuracy(pred: np.ndarray, gt: np.ndarray) -> float:
    return float((pred[gt > 0] == gt[gt > 0]).mean())


def _majority(gt: np.ndarray) -> float:
    return float(np.bincount(gt[gt > 0]).max() / (gt > 0).sum())


# ------------------------------------------------------------------------------ stacks
def test_stack_trains_on_labeled_slices_only(stack):
    store, _ = stack
    clf_norm = project_normalization(store, ["vol"])
    data = training_images(store, ["vol"], clf_norm, 0.5)
    assert [im.name for im in data] == ["vol[z=0]", "vol[z=2]"]  # slice 1 has no label: skipped
    labels, prov = store.labels("vol"), store.provenance("vol")
    for im, z in zip(data, (0, 2), strict=True):
        assert im.x.shape == (15, 64, 64) and im.target.shape == (64, 64)
        x, _ = normalized_window(store, "vol", clf_norm, index=z)
        np.testing.assert_array_equal(im.x, x)
        np.testing.assert_array_equal(im.target >= 0, labels[z] > 0)
        np.testing.assert_array_equal(im.extra["human"], prov[z] == PROVENANCE_HUMAN)
    with pytest.raises(StackIndexError, match="read one slice at a time"):
        normalized_window(store, "vol", clf_norm)
    with pytest.raises(StackIndexError, match="outside image 'vol'"):
        normalized_window(store, "vol", clf_norm, index=DEPTH)


def test_stack_predict_slices_and_whole_stack(stack):
    store, gt = stack
    _, state = run_to_end(train_project(store, FAST))
    one = run_to_end(predict_project_image(store, "vol", state, index=1))
    assert one.labels.shape == (64, 64) and one.probabilities.shape == (5, 64, 64)
    assert _accuracy(one.labels, gt[1]) > _majority(gt[1]) + 0.1  # the slice nobody labeled
    stored = store.read_derived("vol", "prediction")
    assert stored.shape == (DEPTH, 64, 64)
    np.testing.assert_array_equal(stored[1], one.labels)
    assert not stored[0].any() and not stored[2].any()  # not predicted yet: zeros
    assert store.read_derived("vol", "probabilities").shape == (5, DEPTH, 64, 64)
    assert stored_prediction(store, "vol", state)["slices"] == [1]
    run_to_end(predict_project_image(store, "vol", state, index=2))
    assert stored_prediction(store, "vol", state)["slices"] == [1, 2]
    np.testing.assert_array_equal(store.read_derived("vol", "prediction")[1], one.labels)

    reports = []
    whole = run_to_end(predict_project_image(store, "vol", state), reports.append)
    assert whole.labels.shape == (DEPTH, 64, 64)
    assert whole.probabilities.shape == (5, DEPTH, 64, 64)
    assert whole.confidence.shape == whole.margin.shape == whole.entropy.shape == (DEPTH, 64, 64)
    np.testing.assert_allclose(whole.probabilities[:, 1], one.probabilities, atol=1e-5)
    np.testing.assert_array_equal(whole.labels[1], one.labels)
    assert reports[-1].done == reports[-1].total and "z=2 (3/3)" in reports[-1].message
    assert [r.done for r in reports] == sorted(r.done for r in reports)
    assert stored_prediction(store, "vol", state)["slices"] == [0, 1, 2]
    for z in range(DEPTH):
        assert _accuracy(whole.labels[z], gt[z]) > _majority(gt[z]) + 0.1

    token = CancelToken()
    token.cancel()
    with pytest.raises(Exception, match="cancelled"):
        run_to_end(predict_project_image(store, "vol", state, cancel=token))
    with pytest.raises(StackIndexError, match="has 3 Z slices"):
        run_to_end(predict_project_image(store, "vol", state, index=3))


def test_stack_push_one_slice_and_exact_undo(stack):
    store, _ = stack
    _, state = run_to_end(train_project(store, FAST))
    labels0, prov0 = store.labels("vol"), store.provenance("vol")
    run_to_end(predict_project_image(store, "vol", state, index=1))
    with pytest.raises(StaleDataError, match="predict that slice first"):
        push_project_image(store, "vol", 0.5, index=0)
    rec = push_project_image(store, "vol", 0.5, index=1)
    labels1, prov1 = store.labels("vol"), store.provenance("vol")
    assert rec.count > 0
    np.testing.assert_array_equal(labels1[[0, 2]], labels0[[0, 2]])  # other slices untouched
    np.testing.assert_array_equal(prov1[[0, 2]], prov0[[0, 2]])
    assert rec.count == int((prov1[1] == machine_provenance(1)).sum())
    np.testing.assert_array_equal(
        labels1[1][labels1[1] > 0], store.read_derived("vol", "prediction")[1][labels1[1] > 0]
    )

    # the whole stack: every slice predicted by this model, never over any existing label
    run_to_end(predict_project_image(store, "vol", state))
    rec2 = push_project_image(store, "vol", 0.5, margin=0)
    labels2, prov2 = store.labels("vol"), store.provenance("vol")
    had = labels1 > 0
    np.testing.assert_array_equal(labels2[had], labels1[had])
    np.testing.assert_array_equal(prov2[had], prov1[had])
    assert rec2.count == int((labels2 > 0).sum() - had.sum()) > 0
    assert all((labels2[z] > labels1[z]).any() for z in (0, 2))  # slices 0 and 2 got labels too
    assert push_history(store, "vol") == [1, 1]
    assert store_undo(store, "vol") == rec2.count
    np.testing.assert_array_equal(store.labels("vol"), labels1)
    np.testing.assert_array_equal(store.provenance("vol"), prov1)
    assert store_undo(store, "vol") == rec.count
    np.testing.assert_array_equal(store.labels("vol"), labels0)
    np.testing.assert_array_equal(store.provenance("vol"), prov0)


def test_stack_slice_of_another_model_is_refused(stack):
    store, _ = stack
    _, state1 = run_to_end(train_project(store, FAST))
    run_to_end(predict_project_image(store, "vol", state1, index=1))
    _, state2 = run_to_end(train_project(store, FAST))
    with pytest.raises(StaleDataError, match="out of date"):
        stored_prediction(store, "vol", state2, index=1)
    with pytest.raises(StaleDataError, match="out of date"):
        push_project_image(store, "vol", 0.5)
    # the new model predicts slice 2: the arrays are reset, slice 1 (the old model's) is gone
    run_to_end(predict_project_image(store, "vol", state2, index=2))
    assert not store.read_derived("vol", "prediction")[1].any()
    with pytest.raises(StaleDataError, match=r"predicted slices \[2\].*--slice 1"):
        push_project_image(store, "vol", 0.5, index=1)
    assert stored_prediction(store, "vol", state2)["slices"] == [2]
    assert push_project_image(store, "vol", 0.5, index=2).count > 0
    assert stored_prediction(store, "vol", load_state(store), index=2)["prediction"].shape == (
        64,
        64,
    )


def test_slice_index_on_a_2d_image_is_refused(flat):
    store, _ = flat
    _, state = run_to_end(train_project(store, FAST))
    with pytest.raises(StackIndexError, match="2-D"):
        run_to_end(predict_project_image(store, "sample", state, index=0))
    run_to_end(predict_project_image(store, "sample", state))
    with pytest.raises(StackIndexError, match="2-D"):
        push_project_image(store, "sample", 0.5, index=0)


# ------------------------------------------------------------------------------ regions
@pytest.mark.parametrize("model", ["unet", "patch-cnn", "rf"])
def test_region_prediction_equals_full_inside_and_zero_outside(flat, model):
    store, _ = flat
    _, state = run_to_end(train_project(store, TrainConfig(model=model, steps=30, warm_steps=10)))
    full = run_to_end(predict_project_image(store, "sample", state, write=False))
    for box in ((41, 62, 50, 71), (0, 17, 77, 96)):  # inside, and at the image's corner
        r0, r1, c0, c1 = box
        part = run_to_end(predict_project_image(store, "sample", state, region=box))
        inside = (slice(None), slice(r0, r1), slice(c0, c1))
        np.testing.assert_allclose(
            part.probabilities[inside], full.probabilities[inside], atol=1e-4
        )
        np.testing.assert_allclose(
            part.confidence[r0:r1, c0:c1], full.confidence[r0:r1, c0:c1], atol=1e-5
        )
        sure = full.margin[r0:r1, c0:c1] > 1e-3  # argmax ties may flip on float noise
        np.testing.assert_array_equal(
            part.labels[r0:r1, c0:c1][sure], full.labels[r0:r1, c0:c1][sure]
        )
        outside = np.ones((96, 96), bool)
        outside[r0:r1, c0:c1] = False
        for arr in (part.labels, part.confidence, part.margin, part.entropy):
            assert not arr[outside].any()
        assert not part.probabilities[:, outside].any()
        np.testing.assert_array_equal(store.read_derived("sample", "confidence"), part.confidence)
    # a push from the region prediction (every pixel, no margin) stays inside the box
    before = store.labels("sample")
    rec = push_project_image(store, "sample", 0.0, margin=0)
    added = store.labels("sample") != before
    assert rec.count == int(added.sum()) > 0
    assert not added[outside].any()


def test_region_on_a_stack_slice(stack):
    store, _ = stack
    _, state = run_to_end(train_project(store, FAST))
    full = run_to_end(predict_project_image(store, "vol", state, index=1, write=False))
    part = run_to_end(predict_project_image(store, "vol", state, index=1, region=(5, 30, -4, 20)))
    np.testing.assert_allclose(part.confidence[5:30, :20], full.confidence[5:30, :20], atol=1e-4)
    assert not part.confidence[30:].any() and not part.confidence[:, 20:].any()
    with pytest.raises(ValueError, match="no pixel inside the image"):
        run_to_end(predict_project_image(store, "vol", state, index=1, region=(70, 80, 0, 5)))


# --------------------------------------------------------------------------- band subsets
def test_train_on_band_subset(flat):
    store, gt = flat
    bands = ["B04", "B03", "B02"]
    _, state = run_to_end(train_project(store, TrainConfig(steps=30, bands=bands)))
    assert state.classifier.normalization.band_names == bands
    assert load_state(store).classifier.normalization.band_names == bands
    pred = run_to_end(predict_project_image(store, "sample", state))
    assert pred.labels.shape == (96, 96)
    human = store.labels("sample")
    assert _accuracy(pred.labels, human) > 0.6  # it learnt the strokes from 3 bands (30 steps)
    assert _accuracy(pred.labels, gt) > 1 / 5 + 0.1  # and does better than chance elsewhere
    # same bands again: warm start; every band (bands=None): the model starts afresh
    report2, state2 = run_to_end(train_project(store, TrainConfig(warm_steps=10, bands=bands)))
    assert report2.warm_start and state2.iteration == 2
    report3, state3 = run_to_end(train_project(store, FAST))
    assert not report3.warm_start and state3.iteration == 1
    assert len(state3.classifier.normalization.band_names) == 15

    # images are read by band name: other order and extra bands give the same prediction
    x = np.asarray(store.image("sample")[...])
    names = store.image_info("sample").band_names
    order = ["extra", "B02", "B11", "B04", "B03"]
    data = np.stack(
        [
            np.full(x.shape[1:], 7.0, np.float32) if b == "extra" else x[names.index(b)]
            for b in order
        ]
    )
    add_image(store, Raster(data, "CYX", order), "shuffled")
    same = run_to_end(predict_project_image(store, "shuffled", state2))
    ref = run_to_end(predict_project_image(store, "sample", state2, write=False))
    np.testing.assert_allclose(same.probabilities, ref.probabilities, atol=1e-5)
    add_image(store, Raster(data[[0, 1, 3]], "CYX", ["extra", "B02", "B04"]), "no_b03")
    with pytest.raises(IncompatibleBandsError, match="has no band 'B03'"):
        run_to_end(predict_project_image(store, "no_b03", state2))
    with pytest.raises(IncompatibleBandsError, match="image 'no_b03' has no band 'B03'"):
        run_to_end(train_project(store, TrainConfig(steps=30, bands=bands)))
    # training on the images that have them all works, whatever else they hold
    _, state4 = run_to_end(
        train_project(store, TrainConfig(steps=30, bands=bands), images=["sample", "shuffled"])
    )
    assert state4.classifier.normalization.band_names == bands


# ------------------------------------------------------------------------------ the CLI
def test_cli_bands_slice_and_region(stack, capsys):
    store, _ = stack
    path = str(store.path)
    assert main(["train", path, "--steps", "20", "--bands", "B04,B03,B02,DSM"]) == 0
    assert load_state(store).classifier.normalization.band_names == ["B04", "B03", "B02", "DSM"]
    assert main(["predict", path, "--image", "vol", "--slice", "1"]) == 0
    assert stored_prediction(store, "vol", load_state(store))["slices"] == [1]
    before = store.labels("vol")
    assert main(["push", path, "--image", "vol", "--slice", "1", "--threshold", "0.3"]) == 0
    assert main(["push", path, "--image", "vol", "--slice", "0"]) == 2  # slice 0 not predicted
    assert (store.labels("vol")[[0, 2]] == before[[0, 2]]).all()
    assert main(["undo", path, "--image", "vol"]) == 0
    np.testing.assert_array_equal(store.labels("vol"), before)
    assert main(["predict", path, "--image", "vol", "--slice", "2", "--region", "0,20,10,40"]) == 0
    conf = store.read_derived("vol", "confidence")[2]
    assert conf[:20, 10:40].all() and not conf[20:].any() and not conf[:, 40:].any()
    push = ["push", path, "--image", "vol", "--slice", "2", "--threshold", "0", "--margin", "0"]
    assert main([*push, "--region", "0,10,10,20"]) == 0
    added = store.labels("vol")[2] != before[2]
    assert added.any() and not added[10:].any() and not added[:, 20:].any()
    assert main(["predict", path, "--image", "vol", "--region", "1,2,3"]) == 2
    out = capsys.readouterr()
    assert "of slice 1" in out.out and "of rows 0:20, cols 10:40 of slice 2" in out.out
    assert "--region '1,2,3' must be four integers" in out.err
    assert "predict that slice first" in out.err


def test_rank_and_suspects_of_a_stack_go_slice_by_slice(stack):
    from napari_hitl.core.active.review_queue import project_suspects, rank_project
    from napari_hitl.core.active.strategies import local_consistency
    from napari_hitl.core.loop import current_prediction, load_state

    store, _gt = stack
    run_to_end(train_project(store, FAST))
    ranking = run_to_end(rank_project(store, "hise", tile=32))
    assert len(ranking.items) == DEPTH * 4  # 3 slices × 2 × 2 tiles
    assert {it.index for it in ranking.items} == {0, 1, 2}
    state = load_state(store)
    labels = store.labels("vol")
    for it in ranking.items:
        pred = current_prediction(store, "vol", state, index=it.index)
        r0, r1, c0, c1 = it.box
        open_ = labels[it.index, r0:r1, c0:c1] == 0
        want = local_consistency(
            pred.confidence[r0:r1, c0:c1], pred.labels[r0:r1, c0:c1], ranking.beta, [], open_
        )
        assert it.stats.tau_l == pytest.approx(want)
        assert it.key.startswith(f"vol[z={it.index}]@")
    # slice 1 has no human labels: it yields no suspect
    assert all(s.index in (0, 2) for s in project_suspects(store, threshold=0.5))
