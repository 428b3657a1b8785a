"""Training batches: each crop's rotation and flip come from one gather; inputs, targets and
weights of a crop stay aligned; the band jitter moves the bands only."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from napari_hitl.core.learning.batches import PatchBatches, copied_bands, turn_crops
from napari_hitl.core.learning.data import BalancedSampler, LabeledImage
from napari_hitl.core.learning.networks import PatchCNN, SmallUNet


def test_each_crop_is_turned_and_flipped_as_numpy_would():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((8, 3, 6, 6)).astype(np.float32)
    turns = np.arange(8)  # every quarter turn, with and without the flip
    got = turn_crops(a, turns)  # channels-last
    for j in range(8):
        want = np.rot90(a[j], j // 2, axes=(-2, -1))
        if j % 2:
            want = want[..., ::-1]
        np.testing.assert_array_equal(np.moveaxis(got[j], -1, 0), want)
    plain = turn_crops(a[:, 0], turns)  # N, e, e
    np.testing.assert_array_equal(plain, got[..., 0])


def _coded_image(rng):
    """Band 0 is the class (0, 1, 2) itself, band 1 noise; every pixel labeled."""
    target = rng.integers(0, 3, (60, 70))
    x = np.stack([target.astype(np.float32), rng.standard_normal((60, 70)).astype(np.float32)])
    return LabeledImage("coded", x, target, np.ones((60, 70), np.float32))


@pytest.mark.parametrize("net", [SmallUNet(2, 3), SmallUNet(2, 3, [1.0]), PatchCNN(2, 3)])
def test_crops_targets_and_weights_stay_aligned_under_augmentation(net):
    rng = np.random.default_rng(1)
    image = _coded_image(rng)
    draw = PatchBatches([image], 3, rng, [image.target >= 0], net, 16, 8, augment=True)
    unet = isinstance(net, SmallUNet)
    for _ in range(6):
        x, t, w = draw()
        np.testing.assert_array_equal(w.numpy() == 1.0, t.numpy() >= 0)  # off the image: 0
        m = draw.halo
        centre = x[:, 0, m : x.shape[-2] - m, m : x.shape[-1] - m].numpy()
        for j in range(x.shape[0]):
            # after a gain ~ 1 +- 0.1 and an offset ~ 0.05: the classes keep their order and
            # each class one value per crop (misaligned crops mix them)
            values = [np.unique(centre[j][t[j].numpy() == k]) for k in range(3)]
            present = [v for v in values if v.size]
            assert all(v.size == 1 for v in present)
            assert all(a[0] < b[0] for a, b in itertools.pairwise(present))
            if not unet:
                assert present[0][0] == t[j, 0, 0].item()  # the patch CNN is not jittered
        if unet and draw.bank is not None:  # the bank's features are not jittered
            assert x.shape[1] > 2
    if unet:
        assert x.is_contiguous(memory_format=torch.channels_last)


def test_without_band_jitter_the_crops_keep_their_values():
    """``TrainConfig.band_jitter = False``: flips and rotations only, the bands untouched."""
    rng = np.random.default_rng(2)
    image = _coded_image(rng)
    net = SmallUNet(2, 3)
    draw = PatchBatches([image], 3, rng, [image.target >= 0], net, 16, 8, True, False)
    x, t, _ = draw()
    m = draw.halo
    centre = x[:, 0, m:-m, m:-m].numpy()
    labeled = t.numpy() >= 0
    np.testing.assert_array_equal(centre[labeled], t.numpy()[labeled].astype(np.float32))


def test_copied_bands_are_exact_copies_only():
    """A gray image stored as RGB (normalized per band: a gain and an offset apart) is one band
    three times; neighbouring hyperspectral bands, noise and a flat band are not copies."""
    rng = np.random.default_rng(3)
    gray = rng.random((40, 50))
    x = np.stack([gray, (gray - 0.3) / 0.7, rng.random((40, 50)), 2 * gray + 1, -gray])
    x = np.concatenate([x, np.zeros((2, 40, 50))]).astype(np.float32)
    x[2, 0, 0] = np.nan  # a missing pixel does not hide a band
    np.testing.assert_array_equal(copied_bands(x), [0, 0, 2, 0, 4, 5, 6])
    x[5] = np.nan  # a band with no value at all: nobody's copy, and the others still found
    np.testing.assert_array_equal(copied_bands(x), [0, 0, 2, 0, 4, 5, 6])
    np.testing.assert_array_equal(copied_bands(x[:, :1, :1]), np.arange(7))  # one pixel
    cube = (gray + 0.01 * rng.random((30, 40, 50))).astype(np.float32)
    assert 1 - np.corrcoef(cube[-2].ravel(), cube[-1].ravel())[0, 1] < 1e-3  # nearly alike
    np.testing.assert_array_equal(copied_bands(cube), np.arange(30))


def test_bands_that_copy_one_another_share_their_jitter():
    """Jittered crops of a gray-as-RGB image keep their three bands equal; a colour image's
    bands get a gain and an offset each."""
    rng = np.random.default_rng(4)
    target = rng.integers(0, 2, (48, 48))
    gray = rng.random((48, 48)).astype(np.float32)
    colour = rng.random((3, 48, 48)).astype(np.float32)
    ones = np.ones((48, 48), np.float32)
    images = [
        LabeledImage("gray", np.stack([gray] * 3), target, ones),
        LabeledImage("colour", colour, target, ones),
    ]
    draw = PatchBatches(images, 2, rng, None, SmallUNet(3, 2), 64, 8)
    x, _, _ = draw()
    x = x.numpy()
    spread = np.abs(x[:, 1:] - x[:, :1]).max(axis=(1, 2, 3))  # per crop: bands apart
    from_gray = spread < 1e-6
    assert 8 < from_gray.sum() < 56  # both images drawn; the colour crops differ by nature
    margin = draw.halo
    gray_values = x[from_gray][:, 0, margin:-margin, margin:-margin]
    assert not np.allclose(gray_values.std(axis=(1, 2)), gray.std(), rtol=1e-3)  # jittered


def test_half_of_every_batch_lies_on_human_strokes():
    """However many pixels the machine labeled, the first half of each batch's centres are
    human pixels (the person's labels anchor every step); the rest come from any label."""
    rng = np.random.default_rng(5)
    target = rng.integers(0, 2, (64, 64))  # every pixel labeled ...
    human = np.zeros((64, 64), bool)
    human[10:14, 10:14] = True  # ... 32 of them by the person
    human[50:54, 40:44] = True
    weight = np.where(human, 1.0, 0.5).astype(np.float32)
    image = LabeledImage("im", np.zeros((1, 64, 64), np.float32), target, weight)
    sampler = BalancedSampler([image], 2, rng, [human])
    centres = sampler.draw(32)
    on_human = [human[r, c] for _, r, c in centres]
    assert all(on_human[:16])
    assert sum(on_human[16:]) < 8  # 32 of 4096 labeled pixels are human


@pytest.mark.parametrize(("power", "share"), [(1.0, 1000 / 1010), (0.5, 1 / (1 + 0.1)), (0.0, 0.5)])
def test_crops_spread_over_the_images_by_the_image_power(power, share):
    """A class painted on 1,000 pixels of one image and 10 of another: with power 1 every
    labeled pixel is alike (the big image gets 99 % of the crops), with 0 every image is
    (half each), with the default 0.5 the big image gets √1000 / (√1000 + √10) = 10/11."""
    rng = np.random.default_rng(3)
    big = np.full((50, 50), -1)
    big.flat[:1000] = 0
    big[49, 49] = 1  # a second class elsewhere, so the draw has two classes
    small = np.full((50, 50), -1)
    small.flat[:10] = 0
    ones = np.ones((50, 50), np.float32)
    images = [
        LabeledImage("big", np.zeros((1, 50, 50), np.float32), big, ones),
        LabeledImage("small", np.zeros((1, 50, 50), np.float32), small, ones),
    ]
    centres = BalancedSampler(images, 2, rng, None, image_power=power).draw(20000)
    of_class_0 = [(i, r, c) for i, r, c in centres if images[i].target[r, c] == 0]
    assert all(images[i].target[r, c] >= 0 for i, r, c in centres)  # labeled pixels only
    got = np.mean([i == 0 for i, _, _ in of_class_0])
    assert abs(got - share) < 0.015, (power, got, share)


def test_the_image_power_is_checked():
    """A power outside [0, 1] is refused with the option's name, before training."""
    from napari_hitl.core.learning.config import TrainConfig

    with pytest.raises(ValueError, match="--image-power"):
        TrainConfig(image_power=-0.5).check()
    with pytest.raises(ValueError, match="--image-power"):
        TrainConfig(image_power=float("nan")).check()


@pytest.mark.parametrize(("bands", "channels_last"), [(3, False), (4, True)])
def test_patch_cnn_batch_layout_follows_the_bands_and_trains_the_same(bands, channels_last):
    """The patch CNN trains on contiguous batches up to 3 bands (oneDNN's fast path there) and
    channels-last from 4 (faster there); either layout gives the same network to float
    precision, so the choice is speed only."""
    rng = np.random.default_rng(4)
    target = rng.integers(0, 3, (50, 50))
    x = rng.random((bands, 50, 50), dtype=np.float32) + target.astype(np.float32)
    image = LabeledImage("a", x, target, np.ones((50, 50), np.float32))
    draw = PatchBatches([image], 3, rng, [target >= 0], PatchCNN(bands, 3), 32, 8)
    assert draw.channels_last == channels_last
    batches = [draw() for _ in range(8)]
    assert batches[0][0].is_contiguous(memory_format=torch.channels_last) == channels_last
    torch.manual_seed(0)
    init = torch.cat([p.detach().flatten() for p in PatchCNN(bands, 3).parameters()])
    weights = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(0)
        net = PatchCNN(bands, 3).to(memory_format=fmt)
        # plain SGD: an update proportional to the gradient (Adam's sign-like steps would
        # magnify rounding on parameters whose gradient is near zero)
        opt = torch.optim.SGD(net.parameters(), lr=0.5)
        for xb, tb, wb in batches:
            logits, t, _ = draw.logits_and_targets(net, xb.contiguous(memory_format=fmt), tb, wb)
            loss = torch.nn.functional.cross_entropy(logits, t)
            opt.zero_grad()
            loss.backward()
            opt.step()
        weights.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    moved = float((weights[0] - init).abs().max())
    assert moved > 0.01  # it trained
    np.testing.assert_allclose(weights[0].numpy(), weights[1].numpy(), atol=1e-4)
