"""The networks' supervised loss: every class counts the same within a group, and machine labels
enter at their weight beside the human ones, however many pixels they hold."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from napari_hitl.core.learning.losses import balanced_loss, class_losses


def _batch(target, weight, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.tensor(target).reshape(1, 1, -1)  # N, H, W
    logits = torch.randn(1, k, 1, t.shape[-1], generator=g, requires_grad=True)
    return logits, t, torch.tensor(weight).reshape(1, 1, -1)


def _ce(logits, t):
    return F.cross_entropy(logits, t.clamp(min=0), reduction="none").reshape(-1)


def test_a_class_weighs_the_same_however_many_pixels_it_has():
    target = [0] * 50 + [1]  # 50 human pixels of class 0, one of class 1
    logits, t, w = _batch(target, [1.0] * 51)
    ce = _ce(logits, t)
    expected = (ce[:50].mean() + ce[50]) / 2
    torch.testing.assert_close(balanced_loss(logits, t, w, 3), expected)


def test_machine_labels_enter_at_their_weight_averaged_over_their_classes():
    target = [0, 1, 2, 2, 2, -1]
    weight = [1.0, 1.0, 0.5, 0.5, 0.5, 0.5]  # two human pixels, three machine, one unlabeled
    logits, t, w = _batch(target, weight)
    ce = _ce(logits, t)
    human, machine, _zero = class_losses(logits, t, w, 3)
    assert human.weight == 1.0 and human.present.tolist() == [True, True, False]
    assert machine.weight == 0.5 and machine.present.tolist() == [False, False, True]
    expected = (ce[0] + ce[1]) / 2 + 0.5 * ce[2:5].mean()
    loss = balanced_loss(logits, t, w, 3)
    torch.testing.assert_close(loss, expected)
    loss.backward()  # the unlabeled pixel gets no gradient
    assert float(logits.grad[..., 5].abs().sum()) == 0.0


def test_a_batch_without_labels_adds_nothing_but_keeps_the_graph():
    logits, t, w = _batch([-1, -1], [0.0, 0.0])
    human, machine, zero = class_losses(logits, t, w, 3)
    assert float(zero.detach()) == 0.0
    assert human is None and machine is None
    loss = balanced_loss(logits, t, w, 3)
    assert float(loss.detach()) == 0.0 and loss.requires_grad


def test_a_given_per_pixel_loss_is_pooled_by_class_and_group_like_the_cross_entropy():
    target = [0, 0, 0, 1, 2, 2]
    weight = [1.0, 1.0, 1.0, 1.0, 0.5, 0.5]
    logits, t, w = _batch(target, weight)
    per_px = torch.arange(6, dtype=torch.float32).reshape(t.shape)  # 0..5
    human, machine, _zero = class_losses(logits, t, w, 3, per_pixel=per_px)
    torch.testing.assert_close(human.per_class, torch.tensor([1.0, 3.0]))  # (0+1+2)/3, 3
    torch.testing.assert_close(machine.per_class, torch.tensor([4.5]))
