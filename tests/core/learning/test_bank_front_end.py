"""The U-Net's filter-bank front end (``TrainConfig.filter_bank``): the features enter beside
the bands without seams between tiles, on principal components fitted once, kept with the
model; a stored model with another setting is not continued."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from tests.helpers import scribbled_scenes

from napari_hitl.core.learning.data import Normalization
from napari_hitl.core.learning.net import NetClassifier, TrainConfig
from napari_hitl.core.learning.networks import BANK_COMPONENTS, UNET_HALO, ModelSpec, build_model
from napari_hitl.core.learning.prediction import predict_normalized
from napari_hitl.core.learning.registry import classifier_from_state
from napari_hitl.core.progress import run_to_end

CLASSES = [1, 2, 3, 4, 5]


@pytest.fixture(scope="module")
def scenes():
    return scribbled_scenes()


@pytest.fixture(scope="module")
def trained(scenes):
    norm, image, _x_test, _truth, names = scenes
    clf = NetClassifier("unet", norm, CLASSES, names)
    config = TrainConfig(steps=80, seed=0, threads=1, filter_bank=[1.0, 2.0])
    report = run_to_end(clf.fit([image], config))
    return clf, report


def test_the_network_sees_the_bank_and_needs_its_halo():
    net = build_model(ModelSpec("unet", 15, 4, [1.0, 2.0]))
    assert net.bank is not None and net.bank.projection.shape == (BANK_COMPONENTS, 15)
    # bands + 3 components x 2 scales x 7 features enter the U-Net proper
    assert net.enc0[0].in_channels == 15 + BANK_COMPONENTS * 2 * 7
    assert net.input_margin >= net.bank.halo and net.input_margin % net.align == 0
    assert net.halo == UNET_HALO + net.input_margin
    few = build_model(ModelSpec("unet", 2, 4, [1.0]))  # no more bands than components
    assert few.bank.projection is None and few.enc0[0].in_channels == 2 + 2 * 7


def test_tiled_equals_whole_image_with_the_bank(rng):
    torch.manual_seed(1)
    clf = NetClassifier("unet", Normalization([f"b{i}" for i in range(5)], [0] * 5, [1] * 5),
                        [1, 2, 3], ["a", "b", "c"])  # fmt: skip
    clf.spec.bank = [1.0, 2.0, 4.0]
    clf.net = build_model(clf.spec).eval()
    with torch.no_grad():
        clf.net.bank.projection.copy_(torch.randn(BANK_COMPONENTS, 5))
    x = rng.standard_normal((5, 203, 150)).astype(np.float32)  # odd sizes on purpose
    whole = clf.logits(x, tile=None)
    tiled = clf.logits(x, tile=64)
    assert whole.shape == (3, 203, 150)
    np.testing.assert_allclose(tiled, whole, rtol=1e-4, atol=1e-4)


def test_a_u_net_with_the_bank_learns_and_is_kept_with_its_projection(scenes, trained):
    _norm, _image, x_test, truth, _names = scenes
    clf, _report = trained
    acc = float((run_to_end(predict_normalized(clf, x_test)).labels == truth).mean())
    print(f"filter bank 1,2: held-out pixel accuracy {acc:.3f}")
    assert acc > 0.75  # the floor of the plain U-Net's test (measured 0.841; plain 0.839)
    projection = clf.net.bank.projection.numpy()
    # principal axes of the training pixels: orthonormal rows, not the zeros it was built with
    np.testing.assert_allclose(projection @ projection.T, np.eye(BANK_COMPONENTS), atol=1e-4)
    blob, config = clf.state()
    assert config["spec"]["bank"] == [1.0, 2.0]
    again = classifier_from_state(blob, config)
    np.testing.assert_allclose(again.logits(x_test), clf.logits(x_test), atol=1e-5)


def test_warm_starts_keep_the_bank_and_another_setting_starts_afresh(scenes, trained):
    _norm, image, *_ = scenes
    clf, _report = trained
    before = clf.net.bank.projection.clone()
    warm = run_to_end(clf.fit([image], TrainConfig(steps=5, warm_steps=3, filter_bank=[1, 2])))
    assert warm.warm_start and warm.steps == 3
    torch.testing.assert_close(clf.net.bank.projection, before)  # fitted once, then kept
    plain = run_to_end(clf.fit([image], TrainConfig(steps=5, warm_steps=3)))
    assert not plain.warm_start and plain.steps == 5  # another front end: a fresh network
    assert clf.net.bank is None and clf.spec.bank is None and clf.halo == UNET_HALO


@pytest.mark.parametrize("bank", [[0.0], [1.0, float("nan")], [32.0]])
def test_scales_no_bank_can_use_are_refused_before_training(scenes, bank):
    norm, image, _x, _truth, names = scenes
    clf = NetClassifier("unet", norm, CLASSES, names)
    job = clf.fit([image], TrainConfig(steps=5, filter_bank=bank))
    with pytest.raises(ValueError, match=re.escape("filter-bank scales (--filter-bank) must be")):
        next(job)
    assert not clf.trained
