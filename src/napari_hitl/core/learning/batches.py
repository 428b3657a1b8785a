"""Training batches for the torch networks: random crops around labeled pixels,
class-balanced, with flips, quarter turns and (U-Net) a per-band gain/offset jitter.

:class:`PatchBatches` is what :class:`~napari_hitl.core.learning.net.NetClassifier` trains on
(and attention steering fine-tunes on); :func:`turn_crops` applies each crop's turn and flip to
a whole batch at once.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from napari_hitl.core.learning.data import BalancedSampler, LabeledImage
from napari_hitl.core.learning.networks import PatchCNN
from napari_hitl.core.tiling import pad_for_tiles

TRAIN_MARGIN = 8  # U-Net training crops: context pixels around the supervised window
PATCH_CONTIGUOUS_BANDS = 3  # the patch CNN trains on contiguous batches up to this many bands
COPY_TOLERANCE = 1e-6  # 1 - correlation under which two bands are one measurement


def copied_bands(x: np.ndarray, max_pixels: int = 8192) -> np.ndarray:
    """For each band of ``x`` (``C, H, W``), the first band it is an exact copy of, up to a
    gain and an offset (itself if none): a gray image stored as RGB has ``[0, 0, 0]``.

    Copies are found by their correlation (``r ≥ 1 − COPY_TOLERANCE``) on an even subsample
    of about ``max_pixels`` pixels (those where every band with a value has one); bands with
    no spread or no value are nobody's copy. Neighbouring bands of a hyperspectral cube
    (1 − r ≈ 1e-5) are not copies.
    """
    c = x.shape[0]
    groups = np.arange(c)
    if c < 2:
        return groups
    flat = x.reshape(c, -1)
    flat = flat[:, :: max(1, flat.shape[1] // max_pixels)].astype(np.float64)
    finite = np.isfinite(flat)
    present = finite.any(axis=1)  # a band with no finite pixel is nobody's copy
    flat = np.where(present[:, None], flat, 0.0)[:, (finite | ~present[:, None]).all(axis=0)]
    if flat.shape[1] < 2:
        return groups
    centred = flat - flat.mean(axis=1, keepdims=True)
    norm = np.sqrt((centred**2).sum(axis=1))
    live = present & (norm > 1e-12 * max(1.0, float(np.abs(flat).max(initial=0.0))))
    corr = (centred @ centred.T) / np.maximum(np.outer(norm, norm), 1e-300)
    same = (corr >= 1.0 - COPY_TOLERANCE) & live[:, None] & live[None, :]
    for b in range(1, c):
        for a in np.flatnonzero(same[:b, b]):
            if groups[a] == a:
                groups[b] = a
                break
    return groups


@functools.lru_cache(maxsize=8)
def _turn_maps(edge: int) -> np.ndarray:
    """For an ``edge``² grid, the flat source index of every pixel after ``k`` quarter turns
    (``np.rot90`` on the last two axes) and then, for odd rows, a left-right flip: ``8, edge²``."""
    base = np.arange(edge * edge).reshape(edge, edge)
    maps = []
    for k in range(4):
        turned = np.rot90(base, k)
        maps += [turned.ravel(), turned[:, ::-1].ravel()]
    out = np.stack(maps)
    out.flags.writeable = False  # shared by every call (cached)
    return out


def turn_crops(a: np.ndarray, turns: np.ndarray) -> np.ndarray:
    """Each of ``a``'s ``N`` crops turned and flipped as ``turns`` says (rows of
    :func:`_turn_maps`): ``N, e, e`` stays ``N, e, e``; ``N, C, e, e`` comes back channels-last,
    ``N, e, e, C`` (what the U-Net trains on)."""
    n, edge = a.shape[0], a.shape[-1]
    maps = _turn_maps(edge)[turns]  # N, e²
    rows = np.arange(n)[:, None]
    if a.ndim == 3:
        return a.reshape(n, edge * edge)[rows, maps].reshape(n, edge, edge)
    flat = a.reshape(n, a.shape[1], edge * edge)  # advanced indices around a slice: N, e², C
    return flat[rows, :, maps].reshape(n, edge, edge, a.shape[1])


class PatchBatches:
    """Random training batches around labeled pixels, class-balanced (a callable).

    The patch CNN sees exactly its 25×25 patch. The U-Net trains on crops with an 8 px margin
    (``TRAIN_MARGIN``) and its own zero padding (3× cheaper than a full halo); the loss skips
    the margin. Augmentation: random flips and 90° rotations, and for the U-Net a per-band
    gain/offset jitter (robustness to illumination and haze changes) that bands which copy one
    another share (:func:`copied_bands`).

    Parameters
    ----------
    images
        The training images.
    n_classes
        Number of classes.
    rng
        Random generator (reproducible batches).
    human
        Per image, the human-labeled pixels (half of each batch is drawn from them).
    net
        The network the batches are for (patch CNN or U-Net).
    batch, patch
        Crops per batch and the U-Net's supervised crop edge.
    augment
        Random flips, rotations and (U-Net, with ``band_jitter``) band jitter.
    band_jitter
        The U-Net's per-band gain/offset jitter (``TrainConfig.band_jitter``).
    image_power
        How the crops spread over the images (``TrainConfig.image_power``,
        :class:`~napari_hitl.core.learning.data.BalancedSampler`).
    """

    def __init__(
        self,
        images: Sequence[LabeledImage],
        n_classes: int,
        rng: np.random.Generator,
        human: Sequence[np.ndarray] | None,
        net: nn.Module,
        batch: int,
        patch: int,
        augment: bool = True,
        band_jitter: bool = True,
        image_power: float = 1.0,
    ) -> None:
        self.rng = rng
        self.augment = augment
        self.band_jitter = band_jitter
        self.is_patch = isinstance(net, PatchCNN)
        self.bands = images[0].x.shape[0] if images else 0
        # Batches come channels-last (and the network trains so) but for the patch CNN on up
        # to PATCH_CONTIGUOUS_BANDS bands, where oneDNN's contiguous 11×11 convolution is the
        # faster one (docs/benchmarks.md, "Speed").
        self.channels_last = not self.is_patch or self.bands > PATCH_CONTIGUOUS_BANDS
        self.halo = int(net.halo) if self.is_patch else TRAIN_MARGIN  # type: ignore[arg-type]
        self.out_size = 1 if self.is_patch else patch
        self.batch = batch
        # A U-Net's filter bank runs once per image here, not on every crop (its halo would
        # triple each crop's edge); its features are rotation-invariant, so they turn with the
        # crop. The crops then hold bands and features: what enters the U-Net proper.
        self.bank = None if self.is_patch else getattr(net, "bank", None)
        self.sampler = BalancedSampler(images, n_classes, rng, human, image_power)
        # A band that copies another (a gray image stored as RGB) takes the copy's jitter: an
        # independent draw would show the network colour differences no such image has
        # (docs/learning-log.md, "Copied bands share their jitter").
        self.jitter = not self.is_patch and augment and band_jitter
        self.copies = [copied_bands(im.x) for im in images] if self.jitter else []
        r = self.out_size // 2 + self.halo
        self.r = r
        self.padded = [
            (
                self._padded_input(im.x, r),
                np.pad(im.target, r, constant_values=-1),
                np.pad(im.weight, r),
            )
            for im in images
        ]

    def _padded_input(self, x: np.ndarray, r: int) -> np.ndarray:
        if self.bank is None:
            return pad_for_tiles(x, r)
        with torch.no_grad():  # valid borders: the features of the image padded by r
            feats = self.bank(torch.from_numpy(pad_for_tiles(x, r + self.bank.halo))[None])[0]
        return np.concatenate([pad_for_tiles(x, r), feats.numpy().astype(np.float32, copy=False)])

    def jitter_params(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One U-Net crop's random gain and offset per band (not on the bank's features)."""
        c = self.bands
        gain = 1.0 + 0.1 * rng.standard_normal(c).astype(np.float32)
        offset = 0.05 * rng.standard_normal(c).astype(np.float32)
        return gain.astype(np.float32), offset.astype(np.float32)

    def features(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The U-Net's last feature map on a batch from :meth:`__call__` (the whole crop: the
        BatchNorm statistics of its last block must see the margin too — running that block on
        the supervised window only lost test mIoU, docs/learning-log.md)."""
        if self.bank is not None:  # the crops hold the bank's features already
            return net.unet_features(x)  # type: ignore[operator]
        return net.features(x)  # type: ignore[operator]

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One batch: inputs ``N, C, h, w``, targets and weights ``N, out, out``.

        The random draws go crop by crop (centre, rotation, flip, jitter); the array work is
        done for the whole batch at once: each crop's rotation and flip is a gather through
        one of eight precomputed index maps, and the U-Net's crops come out channels-last.
        """
        rng, halo, out_size, r = self.rng, self.halo, self.out_size, self.r
        centres = self.sampler.draw(self.batch)
        n, c = len(centres), self.bands
        turns = np.zeros(n, np.intp)  # index into the eight maps: 2 * quarter turns + flip
        jitter = self.jitter
        gains = np.ones((n, c), np.float32)
        offsets = np.zeros((n, c), np.float32)
        xs, ts, ws = [], [], []
        for j, (i, row, col) in enumerate(centres):
            px, pt, pw = self.padded[i]
            y0, x0 = row + r - out_size // 2, col + r - out_size // 2
            xs.append(px[:, y0 - halo : y0 + out_size + halo, x0 - halo : x0 + out_size + halo])
            ts.append(pt[y0 : y0 + out_size, x0 : x0 + out_size])
            ws.append(pw[y0 : y0 + out_size, x0 : x0 + out_size])
            if self.augment:
                turns[j] = 2 * int(rng.integers(4)) + (rng.random() < 0.5)
            if jitter:
                gain, offset = self.jitter_params(rng)
                gains[j], offsets[j] = gain[self.copies[i]], offset[self.copies[i]]
        x = turn_crops(np.stack(xs).astype(np.float32, copy=False), turns)
        if jitter:
            x[..., :c] = x[..., :c] * gains[:, None, None] + offsets[:, None, None]
        t = turn_crops(np.stack(ts), turns)
        w = turn_crops(np.stack(ws), turns)
        xt = torch.from_numpy(x).permute(0, 3, 1, 2)  # channels-last strides
        if not self.channels_last:
            xt = xt.contiguous()
        return xt, torch.from_numpy(t), torch.from_numpy(w)

    def logits_and_targets(
        self, net: nn.Module, x: torch.Tensor, t: torch.Tensor, w: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The logits on a batch, cropped to its supervised pixels, with ``t`` and ``w``."""
        if self.is_patch:
            return net.forward_patches(x), t[:, 0, 0], w[:, 0, 0]  # type: ignore[operator]
        h = self.halo
        return net.out(self.features(net, x))[..., h:-h, h:-h], t, w  # type: ignore[operator]
