"""The networks: the paper's patch CNN evaluated densely equals its patch form; no tiling seams."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_hitl.core.learning.data import Normalization
from napari_hitl.core.learning.forest import ForestClassifier
from napari_hitl.core.learning.net import NetClassifier
from napari_hitl.core.learning.networks import PatchCNN, SmallUNet, flops_per_pixel
from napari_hitl.core.progress import run_to_end
from napari_hitl.core.tiling import tiled_apply


def _norm(c):
    return Normalization([f"b{i}" for i in range(c)], [0.0] * c, [1.0] * c)


def test_patch_cnn_dense_equals_patch_by_patch():
    torch.manual_seed(0)
    net = PatchCNN(4, 3).eval()
    x = torch.randn(1, 4, 60, 70)
    with torch.no_grad():
        dense = net(x)[0]  # 3, 36, 46: one output per pixel with a full 25x25 patch
        assert dense.shape == (3, 60 - 24, 70 - 24)
        rng = np.random.default_rng(0)
        rows = rng.integers(12, 60 - 12, 40)
        cols = rng.integers(12, 70 - 12, 40)
        patches = torch.stack(
            [x[0, :, r - 12 : r + 13, c - 12 : c + 13] for r, c in zip(rows, cols, strict=True)]
        )
        per_patch = net.forward_patches(patches)  # 40, 3
    torch.testing.assert_close(dense[:, rows - 12, cols - 12].T, per_patch, rtol=1e-5, atol=1e-5)


def test_patch_cnn_has_the_papers_shape():
    net = PatchCNN(6, 5)
    assert net.conv.out_channels == 20 and net.conv.kernel_size == (11, 11)
    assert net.fc1.weight.shape == (100, 20, 3, 3)  # FC-100 over the 3x3x20 pooled map
    assert net.fc2.weight.shape == (100, 100, 1, 1) and net.out.weight.shape == (5, 100, 1, 1)
    with torch.no_grad():
        assert net.forward_patches(torch.zeros(2, 6, 25, 25)).shape == (2, 5)


@pytest.mark.parametrize("kind", ["unet", "patch-cnn"])
def test_tiled_equals_whole_image(kind, rng):
    torch.manual_seed(1)
    clf = NetClassifier(kind, _norm(5), [1, 2, 3], ["a", "b", "c"])
    clf.net.eval()
    x = rng.standard_normal((5, 203, 150)).astype(np.float32)  # odd sizes on purpose
    whole = clf.logits(x, tile=None)
    tiled = clf.logits(x, tile=64)
    assert whole.shape == (3, 203, 150)
    np.testing.assert_allclose(tiled, whole, rtol=1e-4, atol=1e-4)


def test_forest_tiled_equals_whole(rng):
    from napari_hitl.core.learning.data import LabeledImage
    from napari_hitl.core.learning.net import TrainConfig

    x = rng.standard_normal((2, 90, 100)).astype(np.float32)
    target = np.full((90, 100), -1)
    target[10:20, 10:20] = 0
    target[60:70, 60:70] = 1
    clf = ForestClassifier(_norm(2), [1, 2], ["a", "b"], n_estimators=10)
    run_to_end(
        clf.fit(
            [LabeledImage("a", x, target, (target >= 0).astype(np.float32))],
            TrainConfig(holdout_fraction=0),
        )
    )
    np.testing.assert_allclose(clf.logits(x, tile=40), clf.logits(x, tile=None), atol=1e-5)


def test_tiled_apply_counts_progress_and_cancels(rng):
    from napari_hitl.core.errors import Cancelled
    from napari_hitl.core.progress import CancelToken

    x = rng.standard_normal((1, 100, 100)).astype(np.float32)
    job = tiled_apply(lambda w: w[:, 2:-2, 2:-2], x, 1, 2, 1, 32)
    reports = []
    out = run_to_end(job, reports.append)
    np.testing.assert_array_equal(out, x)
    assert [r.done for r in reports] == list(range(1, 17)) and reports[-1].total == 16
    token = CancelToken()
    job = tiled_apply(lambda w: w[:, 2:-2, 2:-2], x, 1, 2, 1, 32, token)
    next(job)
    token.cancel()
    with pytest.raises(Cancelled):
        next(job)


def test_the_unet_widths_set_its_channels_and_leave_its_output_alone():
    x = torch.zeros(1, 3, 64, 64)
    narrow, wide = SmallUNet(3, 4), SmallUNet(3, 4, widths=(36, 72, 96))
    assert narrow.features(x).shape[1] == 24 and wide.features(x).shape[1] == 36
    assert wide(x).shape == narrow(x).shape == (1, 4, 64 - 2 * 24, 64 - 2 * 24)
    assert sum(p.numel() for p in wide.parameters()) > 2 * sum(
        p.numel() for p in narrow.parameters()
    )


def test_flops_are_counted():
    unet = flops_per_pixel(SmallUNet(15, 5), 15, size=256)
    patch = flops_per_pixel(PatchCNN(15, 5), 15, size=1024)
    assert 40_000 < unet < 120_000
    # patch CNN per output pixel: 11*11*15*20 + 9*20*100 + 100*100 + 100*5 MACs, x2
    assert patch == pytest.approx(
        2 * (11 * 11 * 15 * 20 + 9 * 20 * 100 + 100 * 100 + 100 * 5), rel=0.03
    )
