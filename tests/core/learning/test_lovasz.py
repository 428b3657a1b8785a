"""The Lovász-softmax loss: 1 - mIoU of the labeled pixels on hard predictions, blind to unlabeled
ones, and a training switch under which the U-Net still learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.helpers import scribbled_scenes

from napari_hitl.core.learning.losses import lovasz_softmax
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.learning.prediction import predict_normalized
from napari_hitl.core.learning.registry import make_classifier
from napari_hitl.core.progress import run_to_end


def _hard_batch(seed: int = 0, k: int = 3, n: int = 300):
    rng = np.random.default_rng(seed)
    target = torch.as_tensor(rng.integers(0, k, n)).reshape(1, 1, n)
    labeled = torch.as_tensor(rng.random(n) < 0.8).reshape(1, 1, n)
    pred = np.where(rng.random(n) < 0.7, target.reshape(-1).numpy(), rng.integers(0, k, n))
    logits = torch.full((1, k, 1, n), -30.0)
    logits[0, torch.as_tensor(pred), 0, torch.arange(n)] = 30.0  # probabilities 0 or 1
    return logits, target, labeled, pred


def test_on_hard_predictions_it_is_one_minus_the_mean_iou_of_the_labeled_pixels():
    for seed in range(3):
        logits, target, labeled, pred = _hard_batch(seed)
        keep = labeled.reshape(-1).numpy()
        t, p = target.reshape(-1).numpy()[keep], pred[keep]
        ious = [((p == c) & (t == c)).sum() / ((p == c) | (t == c)).sum() for c in np.unique(t)]
        expected = 1.0 - float(np.mean(ious))
        assert 0.2 < expected < 0.8  # a partly right prediction
        assert float(lovasz_softmax(logits, target, labeled)) == pytest.approx(expected, abs=1e-5)


def test_descending_it_labels_every_labeled_pixel_right_and_leaves_the_others():
    logits, target, labeled, _pred = _hard_batch(1)
    soft = (logits / 30.0).clone().requires_grad_(True)  # unsure: probabilities near 0.5
    start = soft.detach().argmax(1)
    opt = torch.optim.Adam([soft], lr=0.1)
    losses = []
    for _ in range(50):
        loss = lovasz_softmax(soft, target, labeled)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.1 * losses[0]  # measured 0.459 -> 0.005
    now = soft.detach().argmax(1)
    assert bool((now == target)[labeled].all())
    assert bool((now == start)[~labeled].all())


def test_unlabeled_pixels_neither_count_nor_get_a_gradient():
    logits, target, labeled, _pred = _hard_batch(2)
    logits = (logits / 30.0).requires_grad_(True)
    loss = lovasz_softmax(logits, target, labeled)
    loss.backward()
    free = ~labeled.reshape(-1)
    assert float(logits.grad[0, :, 0, free].abs().sum()) == 0.0
    other = logits.detach().clone()
    other[0, :, 0, free] = torch.randn(3, int(free.sum()))
    other_target = target.clone()
    other_target[0, 0, free] = 0
    assert float(lovasz_softmax(other, other_target, labeled)) == pytest.approx(
        float(loss.detach())
    )


def test_patch_logits_and_a_batch_without_labels():
    logits, target, labeled, _pred = _hard_batch(0)
    flat = logits[0, :, 0].T  # N, K: the patch CNN's outputs
    assert float(lovasz_softmax(flat, target.reshape(-1), labeled.reshape(-1))) == pytest.approx(
        float(lovasz_softmax(logits, target, labeled))
    )
    z = torch.zeros(4, 3, requires_grad=True)
    none = lovasz_softmax(z, torch.zeros(4, dtype=torch.int64), torch.zeros(4, dtype=torch.bool))
    assert float(none.detach()) == 0.0 and none.requires_grad


def test_the_unet_learns_with_the_lovasz_term_and_the_term_changes_training():
    norm, image, x_test, truth, names = scribbled_scenes()
    weights = []
    for weight in (0.0, 1.0):
        clf = make_classifier("unet", norm, [1, 2, 3, 4, 5], names)
        run_to_end(clf.fit([image], TrainConfig(steps=80, seed=0, lovasz_weight=weight)))
        pred = run_to_end(predict_normalized(clf, x_test))
        assert float((pred.labels == truth).mean()) > 0.75  # as the plain U-Net's test asks
        weights.append(np.concatenate([p.detach().numpy().ravel() for p in clf.net.parameters()]))
    assert not np.allclose(weights[0], weights[1])
