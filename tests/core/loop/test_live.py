"""Live training: rounds on the posted labels, the view predicted each round, saved at the end."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hitl.core.errors import Cancelled
from napari_hitl.core.evaluation.scribbles import sparse_scribbles
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.learning.prediction import predict_normalized
from napari_hitl.core.learning.registry import list_checkpoints
from napari_hitl.core.loop import load_state, normalized_window
from napari_hitl.core.loop.live import (
    LiveInbox,
    LiveSettings,
    LiveUpdate,
    live_training,
    predict_box,
)
from napari_hitl.core.progress import CancelToken, run_to_end
from napari_hitl.core.sample.store import build_sample_store
from napari_hitl.core.store import PROVENANCE_HUMAN

FAST = TrainConfig(steps=30)


@pytest.fixture
def project(tmp_path):
    store = build_sample_store(tmp_path / "p.zarr", shape=(96, 96))
    return store, store.read_derived("sample", "ground_truth")


def _human(labels):
    return np.where(labels > 0, PROVENANCE_HUMAN, 0).astype(np.uint16)


def _updates(job, on_update=None):
    out = []
    try:
        while True:
            item = next(job)
            if isinstance(item, LiveUpdate):
                out.append(item)
                if on_update:
                    on_update(item)
    except StopIteration as stop:
        return out, stop.value


def test_rounds_follow_new_labels_and_the_view_then_save(project):
    store, gt = project
    few = sparse_scribbles(gt, 0.01, seed=0)
    more = sparse_scribbles(gt, 0.04, seed=1)
    inbox = LiveInbox()
    v1 = inbox.post_labels(few, _human(few))
    inbox.set_view((10, 60, 20, 90))

    def react(update):
        if update.round == 2:
            inbox.post_labels(more, _human(more))  # the person paints more between rounds
            inbox.set_view(None)

    updates, state = _updates(
        live_training(store, "sample", inbox, FAST, LiveSettings(round_steps=5), max_rounds=4),
        react,
    )
    assert [u.round for u in updates] == [1, 2, 3, 4] and all(u.trained for u in updates)
    assert updates[0].box == (10, 60, 20, 90) and updates[0].prediction.labels.shape == (50, 70)
    assert updates[0].labels_version == v1 and updates[-1].labels_version == v1 + 1
    assert updates[-1].box == (0, 96, 0, 96)
    # saved as the next iteration, calibrated, and good on pixels nobody labeled
    assert state.iteration == 1 and list_checkpoints(store) == ["latest"]
    assert load_state(store).model_hash == state.model_hash
    unlabeled = more == 0
    acc = (updates[-1].prediction.labels == gt)[unlabeled].mean()
    majority = np.bincount(gt[unlabeled]).max() / unlabeled.sum()
    assert acc > majority + 0.1


def test_one_class_pauses_until_a_second_class_is_painted(project):
    store, gt = project
    one = np.where(gt == gt.flat[0], gt, 0)
    one = np.where(sparse_scribbles(gt, 0.05, seed=0) > 0, one, 0).astype(np.uint16)
    inbox = LiveInbox()
    inbox.post_labels(one, _human(one))
    both = sparse_scribbles(gt, 0.03, seed=0)

    def react(update):
        if update.prediction is None:
            inbox.post_labels(both, _human(both))

    updates, state = _updates(
        live_training(store, "sample", inbox, FAST, LiveSettings(round_steps=3), max_rounds=2),
        react,
    )
    assert updates[0].prediction is None and "only one class" in updates[0].message
    assert updates[1].trained and updates[1].prediction is not None and state is not None


def test_stop_saves_and_cancel_does_not(project):
    store, gt = project
    labels = sparse_scribbles(gt, 0.03, seed=0)
    inbox = LiveInbox()
    inbox.post_labels(labels, _human(labels))
    token = CancelToken()
    job = live_training(store, "sample", inbox, FAST, cancel=token)
    while not isinstance(next(job), LiveUpdate):
        pass
    token.cancel()
    with pytest.raises(Cancelled):
        next(job)
    assert list_checkpoints(store) == []  # cancelled: nothing saved
    inbox = LiveInbox()
    inbox.post_labels(labels, _human(labels))
    job = live_training(store, "sample", inbox, FAST, LiveSettings(idle_rounds=2))
    rounds = 0
    while rounds < 3:  # two training rounds, then it pauses: the third comes from a new view
        item = next(job)
        if isinstance(item, LiveUpdate):
            rounds += 1
            assert item.trained == (rounds <= 2)
            if rounds == 2:
                inbox.set_view((0, 32, 0, 32))
    inbox.request_stop()
    _rest, state = _updates(job)
    assert state.iteration == 1 and list_checkpoints(store) == ["latest"]


def test_box_prediction_equals_the_whole_image(project):
    store, gt = project
    labels = sparse_scribbles(gt, 0.03, seed=0)
    store.write_labels("sample", labels)
    inbox = LiveInbox()
    _u, state = _updates(live_training(store, "sample", inbox, FAST, max_rounds=1))
    clf = state.classifier
    x, valid = normalized_window(store, "sample", clf.normalization)
    full = run_to_end(predict_normalized(clf, x, valid))
    part = run_to_end(predict_box(clf, x, valid, (13, 57, 21, 70)))
    np.testing.assert_allclose(part.probabilities, full.probabilities[:, 13:57, 21:70], atol=1e-4)


def test_the_novelty_gate_is_fitted_when_the_session_saves_not_every_round(project, monkeypatch):
    """Rounds skip the gate's fit (it doubled the stroke-to-view time); the saved model has it."""
    from napari_hitl.core.learning import net as net_module
    from napari_hitl.core.learning.registry import classifier_from_state

    store, gt = project
    labels = sparse_scribbles(gt, 0.03, seed=0)
    inbox = LiveInbox()
    inbox.post_labels(labels, _human(labels))
    fits = []
    real = net_module.fit_network_gate
    monkeypatch.setattr(
        net_module, "fit_network_gate", lambda *a, **k: fits.append(1) or real(*a, **k)
    )
    config = TrainConfig(steps=30, novelty_gate=2.0)
    job = live_training(store, "sample", inbox, config, LiveSettings(round_steps=3), max_rounds=3)
    updates, state = _updates(job)
    assert len(updates) == 3 and len(fits) == 1  # three rounds, one fit: the final save
    clf = classifier_from_state(store.model_bytes("latest"), store.model_config("latest"))
    assert clf.novelty is not None and clf.novelty.tau > 0
    assert state.model_hash == load_state(store).model_hash


def test_rounds_are_counted_in_steps_under_a_time_budget(project):
    """A budget times Train, not the live rounds: only the first round of a fresh model uses it
    (a 2 s budget per round would hold each refresh of the view for 2 s)."""
    store, gt = project
    labels = sparse_scribbles(gt, 0.03, seed=0)
    inbox = LiveInbox()
    inbox.post_labels(labels, _human(labels))
    config = TrainConfig(time_budget=2.0, threads=1)
    job = live_training(store, "sample", inbox, config, LiveSettings(round_steps=3), max_rounds=3)
    updates, state = _updates(job)
    assert [u.trained for u in updates] == [True, True, True]
    assert updates[0].seconds >= 2.0  # the fresh model trains for the budget, as Train would
    assert max(u.seconds for u in updates[1:]) < 1.5  # 3 steps and a 96² view, not 2 s each
    assert state is not None and state.iteration == 1
