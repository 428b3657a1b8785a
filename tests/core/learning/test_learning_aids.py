"""Training aids of the learning engine: stroke propagation, the Potts loss on unlabeled pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_hitl.core.learning.data import LabeledImage
from napari_hitl.core.learning.propagation import propagate, propagate_images, superpixels
from napari_hitl.core.learning.regularizers import local_potts_loss


def _two_regions(seed: int = 0, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Bands of a noisy image with a strong vertical edge at a wavy column; its truth (0/1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    edge = size // 2 + (4 * np.sin(yy / 6.0)).astype(int)
    truth = (xx >= edge).astype(np.int64)
    x = np.stack([0.2 + 0.6 * truth, 0.7 - 0.4 * truth, 0.5 * np.ones_like(truth, float)])
    x = x + rng.normal(0, 0.03, x.shape)
    return x.astype(np.float32), truth


def test_propagation_never_crosses_a_strong_edge():
    for seed in range(3):
        x, truth = _two_regions(seed)
        target = np.full(truth.shape, -1, np.int64)
        # strokes hugging the edge from both sides (2 px away), the hardest case
        for r in range(5, 60, 3):
            c = int(np.argmax(truth[r]))
            target[r, c - 3] = 0
            target[r, c + 2] = 1
        human = target >= 0
        prop = propagate(target, human, superpixels(x, 8))
        spread = prop >= 0
        assert spread.sum() > 5 * human.sum()  # it spreads the strokes...
        assert np.all(prop[spread] == truth[spread])  # ...never across the edge
        assert not np.any(spread & human)  # labeled pixels keep their own label


def test_propagation_skips_mixed_superpixels_and_weights_below_the_person():
    target = np.array([[0, -1, -1, 1], [-1, -1, -1, -1]])
    seg = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    human = target >= 0
    assert propagate(target, human, seg).tolist() == [[-1, 0, 1, -1], [0, 0, 1, 1]]
    target[0, 2] = 0  # a machine label of another class: not the person's, does not mix
    assert propagate(target, human, seg)[1, 3] == 1
    human[0, 2] = True  # now the person said both classes in segment 1: leave it alone
    assert np.all(propagate(target, human, seg)[:, 2:] == -1)
    x, truth = _two_regions()
    t = np.full(truth.shape, -1, np.int64)
    t[10, 10], t[10, 55] = 0, 1
    im = LabeledImage("a", x, t, (t >= 0).astype(np.float32), {})
    (out,) = propagate_images([im], [t >= 0], weight=0.3)
    new = (out.target >= 0) & (t < 0)
    assert new.any() and np.all(out.weight[new] == np.float32(0.3))
    assert out.weight[10, 10] == 1 and out.target[10, 10] == 0
    with pytest.raises(ValueError, match="propagation weight"):
        propagate_images([im], [t >= 0], weight=1.0)


def test_potts_loss_falls_as_predictions_follow_a_piecewise_constant_image():
    torch.manual_seed(0)
    x, truth = _two_regions(1, 48)
    image = torch.from_numpy(x)[None]
    logits = torch.randn(1, 2, 48, 48, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    with torch.no_grad():
        first = float(local_potts_loss(logits, image))
    for _ in range(150):
        opt.zero_grad()
        loss = local_potts_loss(logits, image)
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = float(local_potts_loss(logits, image))
    assert last < 0.35 * first  # measured 0.21 × (0.107 from 0.502)
    # the loss alone makes each region uniform: a labeling that follows the edge (up to which
    # class is which) costs less than one that cuts across it
    follow = torch.from_numpy(np.stack([1 - truth, truth]).astype(np.float32))[None] * 10
    across = follow.transpose(-1, -2).contiguous()
    assert float(local_potts_loss(follow, image)) < 0.5 * float(local_potts_loss(across, image))
    with pytest.raises(ValueError, match="share H,W"):
        local_potts_loss(logits, image[..., :10])
    with pytest.raises(ValueError, match="radius"):
        local_potts_loss(logits, image, radius=0)
