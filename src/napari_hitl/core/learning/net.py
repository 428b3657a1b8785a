"""Pixel classifiers with one interface: train from sparse labels, predict calibrated probabilities.

:class:`NetClassifier` wraps the torch networks of :mod:`napari_hitl.core.learning.networks`;
:class:`~napari_hitl.core.learning.forest.ForestClassifier` is the random-forest baseline. Both
train as a
generator of :class:`~napari_hitl.core.progress.Progress` that stops on a cancel token, keep
their configuration (bands, normalization, classes) and a temperature fitted on held-out human
labels, and serialise to bytes + JSON for the project store.
"""

from __future__ import annotations

import copy
import functools
import io
import math
import pickle  # only for pickle.UnpicklingError: nothing here unpickles
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_hitl.core.errors import StoreError, short_reason
from napari_hitl.core.learning.base import TiledLogits
from napari_hitl.core.learning.config import (
    CALIBRATION_DEFAULTS,
    MODEL_DEFAULTS,
    TrainConfig,
    TrainJob,
    TrainReport,
)
from napari_hitl.core.learning.data import (
    BalancedSampler,
    LabeledImage,
    Normalization,
    check_trainable,
    class_log_prior,
    human_class_counts,
    human_mask,
)
from napari_hitl.core.learning.losses import balanced_loss
from napari_hitl.core.learning.networks import ModelSpec, PatchCNN, SmallUNet, build_model
from napari_hitl.core.learning.novelty import NoveltyGate, fit_network_gate
from napari_hitl.core.learning.propagation import propagate_images
from napari_hitl.core.learning.regularizers import local_potts_loss
from napari_hitl.core.learning.schedule import TrainingClock
from napari_hitl.core.learning.weights import (
    fit_bank_projection,
    fold_batchnorm,
    recompute_batchnorm,
    shrink_towards_init,
)
from napari_hitl.core.progress import CancelToken
from napari_hitl.core.tiling import pad_for_tiles

TRAIN_MARGIN = 8  # U-Net training crops: context pixels around the supervised window
TEMPERATURE_RANGE = (1.0, 20.0)
TTA_FLIPS = ((), (-1,), (-2,), (-2, -1))  # the image, flipped left-right, up-down, both
PRECISE_BN_BATCHES = 16  # batches that re-estimate BatchNorm statistics (precise_bn=True)


CALIBRATION_OBJECTIVES = ("brier", "nll")


def fit_temperature(
    logits: np.ndarray, target: np.ndarray, objective: str = "nll"
) -> tuple[float, float, float]:
    """Temperature T that fits ``softmax(logits / T)`` to held-out pixels.

    T is searched in ``TEMPERATURE_RANGE`` (1..20): calibration may only soften the model. Held-out
    human strokes lie inside class regions, away from boundaries (that is how people paint), so they
    are easier than the average pixel; sharpening on them would overstate the confidence exactly
    where the loop relies on it.

    Parameters
    ----------
    logits
        ``N, K`` logits of held-out labeled pixels.
    target
        ``N`` class indices.
    objective
        ``"nll"`` minimises the negative log-likelihood; ``"brier"`` the Brier score (squared
        error of the probabilities). A pixel costs at most 2 under Brier but without bound
        under NLL, so with NLL a single held-out stroke the model gets confidently wrong sets
        the temperature of every pixel.

    Returns
    -------
    (T, nll at T=1, nll at T)
    """
    if objective not in CALIBRATION_OBJECTIVES:
        raise ValueError(
            f"calibration must be one of {', '.join(CALIBRATION_OBJECTIVES)}, got {objective!r}"
        )
    z = torch.as_tensor(logits, dtype=torch.float64)
    t = torch.as_tensor(target, dtype=torch.int64)
    lo, hi = TEMPERATURE_RANGE
    grid = torch.exp(torch.linspace(math.log(lo), math.log(hi), 241, dtype=torch.float64))
    nlls = torch.stack([F.cross_entropy(z / g, t) for g in grid])
    if objective == "nll":
        best = int(torch.argmin(nlls))
    else:
        onehot = F.one_hot(t, z.shape[1]).to(z.dtype)
        brier = torch.stack([((torch.softmax(z / g, 1) - onehot) ** 2).sum(1).mean() for g in grid])
        best = int(torch.argmin(brier))
    return float(grid[best]), float(F.cross_entropy(z, t)), float(nlls[best])


def calibration_objective(config: TrainConfig, kind: str) -> str:
    """The calibration objective ``config`` asks for, or the default of model ``kind``."""
    return config.calibration or CALIBRATION_DEFAULTS.get(kind, "nll")


def split_holdout(
    images: Sequence[LabeledImage],
    fraction: float,
    rng: np.random.Generator,
    human: Sequence[np.ndarray],
) -> tuple[list[LabeledImage], list[tuple[int, np.ndarray]]]:
    """Hold out whole human strokes (connected components) per class for calibration.

    Returns the training images (held-out pixels unlabeled) and, per image, the flat indices of
    held-out pixels. Classes with a single stroke keep it for training.
    """
    from scipy import ndimage

    if fraction <= 0:
        return list(images), []
    train, held = [], []
    for i, im in enumerate(images):
        target = im.target.copy()
        out = np.zeros(target.shape, bool)
        for c in np.unique(target[(target >= 0) & human[i]]):
            comps, n = ndimage.label((target == c) & human[i])
            if n < 2:
                continue
            k = max(1, round(n * fraction))
            chosen = rng.choice(np.arange(1, n + 1), size=min(k, n - 1), replace=False)
            out |= np.isin(comps, chosen)
        target[out] = -1
        weight = im.weight.copy()
        weight[out] = 0
        train.append(LabeledImage(im.name, im.x, target, weight, im.extra))
        if out.any():
            held.append((i, np.flatnonzero(out)))
    return train, held


@dataclass
class TrainingSplit:
    """Labels checked and split for one training run (shared by every classifier)."""

    counts: np.ndarray
    human: list[np.ndarray]
    train: list[LabeledImage]
    held: list[tuple[int, np.ndarray]]


def prepare_training(
    images: Sequence[LabeledImage],
    class_names: Sequence[str],
    config: TrainConfig,
    rng: np.random.Generator,
) -> TrainingSplit:
    """Check the labels can train, and hold out human strokes for calibration."""
    counts = check_trainable(images, class_names)
    human = [human_mask(im) for im in images]
    train, held = split_holdout(images, config.holdout_fraction, rng, human)
    check_trainable(train, class_names)
    return TrainingSplit(counts, human, train, held)


def calibrate(
    clf: Any,
    images: Sequence[LabeledImage],
    held: list[tuple[int, np.ndarray]],
    report: TrainReport,
    objective: str = "nll",
) -> None:
    """Fit ``clf.temperature`` on the held-out human pixels (needs 20 or more), by
    ``objective`` (see :func:`fit_temperature`).

    Also sets ``report.holdout_accuracy``: the share of held-out pixels whose most likely class
    is right. ``clf.logits`` already include the class log prior, exactly as predictions do, and
    the temperature does not move the argmax, so this is what a prediction would say there.
    """
    clf.temperature = 1.0
    report.temperature = 1.0
    report.holdout_accuracy = None
    if report.holdout_pixels < 20:
        return
    logits, target = [], []
    for i, flat in held:
        full = clf.logits(images[i].x)
        logits.append(full.reshape(full.shape[0], -1)[:, flat].T)
        target.append(images[i].target.ravel()[flat])
    z, t = np.concatenate(logits), np.concatenate(target)
    report.holdout_accuracy = float(np.mean(np.argmax(z, axis=1) == t))
    t_best, before, after = fit_temperature(z, t, objective)
    clf.temperature = report.temperature = t_best
    report.holdout_nll_before, report.holdout_nll_after = before, after


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


def _turned(a: np.ndarray, turns: np.ndarray, channels_last: bool = False) -> np.ndarray:
    """Each of ``a``'s ``N`` crops (``N, [C,] e, e``) turned and flipped as ``turns`` says
    (rows of :func:`_turn_maps`); ``channels_last`` returns ``N, e, e, C``."""
    n, edge = a.shape[0], a.shape[-1]
    maps = _turn_maps(edge)[turns]  # N, e²
    rows = np.arange(n)[:, None]
    if a.ndim == 3:
        return a.reshape(n, edge * edge)[rows, maps].reshape(n, edge, edge)
    flat = a.reshape(n, a.shape[1], edge * edge)
    if channels_last:  # advanced indices around a slice: N, e², C
        return flat[rows, :, maps].reshape(n, edge, edge, a.shape[1])
    return flat[rows[:, :, None], np.arange(a.shape[1])[None, :, None], maps[:, None]].reshape(
        a.shape
    )


class PatchBatches:
    """Random training batches around labeled pixels, class-balanced (a callable).

    The patch CNN sees exactly its 25×25 patch. The U-Net trains on crops with an 8 px margin
    (``TRAIN_MARGIN``) and its own zero padding (3× cheaper than a full halo); the loss skips
    the margin. Augmentation: random flips and 90° rotations, and for the U-Net a per-band
    gain/offset jitter (robustness to illumination and haze changes).

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
    ) -> None:
        self.rng = rng
        self.augment = augment
        self.band_jitter = band_jitter
        self.is_patch = isinstance(net, PatchCNN)
        self.halo = int(net.halo) if self.is_patch else TRAIN_MARGIN  # type: ignore[arg-type]
        self.out_size = 1 if self.is_patch else patch
        self.batch = batch
        self.bands = images[0].x.shape[0] if images else 0
        # A U-Net's filter bank runs once per image here, not on every crop (its halo would
        # triple each crop's edge); its features are rotation-invariant, so they turn with the
        # crop. The crops then hold bands and features: what enters the U-Net proper.
        self.bank = None if self.is_patch else getattr(net, "bank", None)
        self.sampler = BalancedSampler(images, n_classes, rng, human)
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
        the supervised window only lost test mIoU, docs/benchmarks.md)."""
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
        jitter = not self.is_patch and self.augment and self.band_jitter
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
                gains[j], offsets[j] = self.jitter_params(rng)
        x = _turned(np.stack(xs).astype(np.float32, copy=False), turns, channels_last=True)
        if jitter:
            x[..., :c] = x[..., :c] * gains[:, None, None] + offsets[:, None, None]
        t = _turned(np.stack(ts), turns)
        w = _turned(np.stack(ws), turns)
        xt = torch.from_numpy(x).permute(0, 3, 1, 2)  # channels-last strides
        if self.is_patch:
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


class NetClassifier(TiledLogits):
    """A torch network trained from sparse labels (U-Net or the paper's patch CNN); ``bank``:
    the scales of the U-Net's filter-bank front end (``TrainConfig.filter_bank``; none: none)."""

    default_tile = 1024  # less halo per tile than 512 (measured equally fast on 2 cores)

    def __init__(
        self,
        kind: str,
        normalization: Normalization,
        class_values: Sequence[int],
        class_names: Sequence[str],
        bank: Sequence[float] | None = None,
    ) -> None:
        self.kind = kind
        self.normalization = normalization
        self.class_values = [int(v) for v in class_values]
        self.class_names = list(class_names)
        scales = [float(v) for v in bank] if bank else None  # the U-Net's filter-bank scales
        self.spec = ModelSpec(
            kind, len(normalization.channel_names), len(self.class_values), scales
        )
        self.net: nn.Module = build_model(self.spec)
        self.temperature = 1.0
        self.class_log_prior = np.zeros(len(self.class_values), np.float32)
        self.trained = False
        self.tta = False  # test-time augmentation (TrainConfig.tta), saved with the model
        self.novelty: NoveltyGate | None = None  # TrainConfig.novelty_gate, saved with the model
        self._eval_net: nn.Module | None = None

    @property
    def halo(self) -> int:
        """Pixels of context needed on each side of a tile."""
        return int(self.net.halo)  # type: ignore[arg-type]

    @property
    def align(self) -> int:
        """Window sizes must be multiples of the network's pooling factor."""
        return int(getattr(self.net, "align", 1))

    # ------------------------------------------------------------------ training
    def fit(
        self, images: Sequence[LabeledImage], config: TrainConfig, cancel: CancelToken | None = None
    ) -> TrainJob:
        """Train (warm-starting from the current weights once trained); a progress generator."""
        import time

        t0 = time.perf_counter()
        config.check()  # before training, not after it
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        rng = np.random.default_rng(config.seed)
        self.tta = bool(config.tta)  # before calibration: the temperature fits what we predict
        self.novelty = None  # the temperature is fitted on the ungated logits (as measured)
        split = prepare_training(images, self.class_names, config, rng)
        counts, human, train_images, held = split.counts, split.human, split.train, split.held
        if config.propagate_weight > 0:
            train_images = propagate_images(
                train_images,
                [h & (im.target >= 0) for h, im in zip(human, train_images, strict=True)],
                config.propagate_weight,
            )
        unet_bank = config.filter_bank if self.kind == "unet" else None
        bank = [float(v) for v in unet_bank] if unet_bank else None
        warm = self.trained and self.spec.bank == bank  # another front end: a fresh network
        if not warm:  # a fresh model starts from weights drawn under the seed: reproducible
            torch.manual_seed(config.seed)
            self.spec = replace(self.spec, bank=bank)
            self.net = build_model(self.spec)
            fit_bank_projection(self.net, train_images, config.seed)
        elif config.warm_shrink < 1.0:
            shrink_towards_init(self.net, self.spec, config.warm_shrink, config.seed)
        defaults = MODEL_DEFAULTS[self.kind]
        steps = int(
            (config.warm_steps or defaults["warm_steps"])
            if warm
            else (config.steps or defaults["steps"])
        )
        lr = float(config.lr or defaults["lr"])
        k = len(self.class_values)
        # Training is class-balanced (the paper's rule), so the network learns p(c|x) under a
        # uniform prior; at inference we put the project's prior back (see class_log_prior).
        self.class_log_prior = class_log_prior(human_class_counts(images, human, k))

        net = self.net
        net.train()
        self._eval_net = None
        if isinstance(net, PatchCNN) and config.extra.get("optimizer") == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                net.parameters(), lr=config.extra.get("sgd_lr", 0.5), momentum=0.9
            )
        else:
            opt = torch.optim.AdamW(
                net.parameters(), lr=lr * (0.5 if warm else 1.0), weight_decay=1e-4
            )
        train_human = [h & (im.target >= 0) for h, im in zip(human, train_images, strict=True)]
        is_patch = isinstance(net, PatchCNN)
        if not is_patch:
            net.to(memory_format=torch.channels_last)
        batch = config.extra.get("patch_batch", 128) if is_patch else config.batch_size
        draw = PatchBatches(
            train_images,
            k,
            rng,
            train_human,
            net,
            batch,
            config.patch,
            config.augment,
            config.band_jitter,
        )

        loss_value = float("nan")
        clock = TrainingClock(opt, steps, config.time_budget)  # after the optimizer's lr is set
        while clock.running():
            if cancel is not None:
                cancel.raise_if_cancelled()
            x, t, w = draw()
            logits, t, w = draw.logits_and_targets(net, x, t, w)
            loss = balanced_loss(logits, t, w, k)
            if config.potts_weight > 0 and not is_patch:  # on the supervised window's pixels
                m, c = draw.halo, draw.bands
                loss = loss + config.potts_weight * local_potts_loss(logits, x[:, :c, m:-m, m:-m])
            opt.zero_grad()
            loss.backward()
            opt.step()
            clock.tick()
            loss_value = float(loss.detach())
            yield clock.progress(f"training {self.kind}", f"loss {loss_value:.3f}")
        if not is_patch:
            if config.precise_bn:
                recompute_batchnorm(net, draw, PRECISE_BN_BATCHES)
            net.to(memory_format=torch.contiguous_format)
        self.trained = True
        self._eval_net = None
        report = TrainReport(
            steps=clock.done,
            seconds=0.0,
            final_loss=loss_value,
            class_pixels=counts.tolist(),
            holdout_pixels=int(sum(f.size for _, f in held)),
            temperature=1.0,
            warm_start=warm,
        )
        calibrate(self, images, held, report, calibration_objective(config, self.kind))
        if config.novelty_gate > 0 and isinstance(net, SmallUNet):
            self.novelty = fit_network_gate(
                self._inference_net(), images, human, config.novelty_gate, rng, self.default_tile
            )
        report.seconds = time.perf_counter() - t0
        return report

    def refit_novelty(
        self, images: Sequence[LabeledImage], human: Sequence[np.ndarray], rng: np.random.Generator
    ) -> None:
        """Fit the novelty gate again, with its factor, after the weights changed (attention
        steering fine-tunes them); without human pixels the gate is dropped."""
        if self.novelty is not None:
            net, f = self._inference_net(), self.novelty.factor
            self.novelty = fit_network_gate(net, images, human, f, rng, self.default_tile)

    # ----------------------------------------------------------------- inference
    def _inference_net(self) -> nn.Module:
        if self._eval_net is None:
            net = copy.deepcopy(self.net).eval()
            if isinstance(net, SmallUNet):
                net = fold_batchnorm(net).to(memory_format=torch.channels_last)
            self._eval_net = net
        return self._eval_net

    def _forward(self, window: np.ndarray) -> np.ndarray:
        net = self._inference_net()
        x = torch.from_numpy(window)[None]
        flips: tuple[tuple[int, ...], ...] = TTA_FLIPS if self.tta else ((),)
        total = None
        gate = self.novelty if isinstance(net, SmallUNet) else None
        scale = None
        with torch.inference_mode():
            for dims in flips:
                xf = torch.flip(x, dims) if dims else x
                if isinstance(net, SmallUNet):
                    xf = xf.contiguous(memory_format=torch.channels_last)
                if gate is not None and not dims:  # the gate reads the unflipped features
                    feats = net.cropped_features(xf)
                    out = net.out(feats)
                    scale = gate.scale(feats[0])
                else:
                    out = net(xf)
                out = torch.flip(out, dims) if dims else out
                total = out if total is None else total + out
        logits = (total[0] / len(flips)).float().numpy()  # type: ignore[index]
        logits = logits + self.class_log_prior[:, None, None]
        if scale is not None:  # towards uniform where the features are unlike any stroke
            logits *= scale.numpy()[None]
        return logits

    def window_logits(self, window: np.ndarray) -> np.ndarray:
        """Logits ``K, h, w`` of the centre of a normalized window padded by :attr:`halo`
        (the per-tile step of :meth:`logits_job`)."""
        return self._forward(window)

    # -------------------------------------------------------------- persistence
    def state(self) -> tuple[bytes, dict[str, Any]]:
        """Weights as bytes and the configuration as JSON (for the store)."""
        buf = io.BytesIO()
        torch.save(self.net.state_dict(), buf)
        return buf.getvalue(), self._config()

    def _config(self) -> dict[str, Any]:
        gate = self.novelty.to_json() if self.novelty is not None else None
        return {
            **self.common_config(),
            "spec": self.spec.to_json(),
            "tta": self.tta,
            "novelty": gate,
        }

    @classmethod
    def from_state(cls, blob: bytes, config: dict[str, Any]) -> NetClassifier:
        """Inverse of :meth:`state` (its ``blob, config``): ``torch.load(weights_only=True)``,
        never a full unpickle.

        Raises
        ------
        StoreError
            The bytes are not a PyTorch weights archive, hold anything but tensors, or do not
            fit the network the configuration describes (or the configuration lacks a key). One
            line, without the store's name (the caller adds it).
        """
        if not blob.startswith(b"PK\x03\x04"):  # torch.save's zip archive
            raise StoreError("is not a PyTorch weights archive (damaged or not a network)")
        try:
            clf = cls(
                config["kind"],
                Normalization.from_json(config["normalization"]),
                config["class_values"],
                config["class_names"],
                (config.get("spec") or {}).get("bank"),  # the U-Net's filter-bank front end
            )
            with warnings.catch_warnings():  # torch's notes on odd archives: not for the user
                warnings.simplefilter("ignore", UserWarning)
                weights = torch.load(io.BytesIO(blob), weights_only=True)
            clf.net.load_state_dict(weights)
            clf.restore_calibration(config)
            if config.get("novelty") is not None:
                width = clf.net.out.in_channels if isinstance(clf.net, SmallUNet) else None
                clf.novelty = NoveltyGate.from_json(config["novelty"], width)
        except pickle.UnpicklingError as exc:
            raise StoreError(
                "holds objects other than plain weights; they were refused, not run"
            ) from exc
        except Exception as exc:
            raise StoreError(
                f"cannot be read as a {config.get('kind')!r} network ({short_reason(exc)})"
            ) from exc
        clf.trained = bool(config.get("trained", True))
        clf.tta = bool(config.get("tta", False))
        return clf
