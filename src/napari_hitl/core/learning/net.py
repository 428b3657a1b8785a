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
from napari_hitl.core.learning.batches import PatchBatches
from napari_hitl.core.learning.config import (
    CALIBRATION_DEFAULTS,
    MODEL_DEFAULTS,
    TrainConfig,
    TrainJob,
    TrainReport,
)
from napari_hitl.core.learning.data import (
    LabeledImage,
    Normalization,
    check_trainable,
    class_log_prior,
    human_class_counts,
    human_mask,
)
from napari_hitl.core.learning.losses import balanced_loss, lovasz_softmax
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
        self.band_jitter = True  # trained with it (TrainConfig.band_jitter): steering follows
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
        self.band_jitter = bool(config.band_jitter)
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
            config.image_power,
        )
        if draw.channels_last:  # the layout the batches come in
            net.to(memory_format=torch.channels_last)

        loss_value = float("nan")
        clock = TrainingClock(opt, steps, config.time_budget)  # after the optimizer's lr is set
        while clock.running():
            if cancel is not None:
                cancel.raise_if_cancelled()
            x, t, w = draw()
            logits, t, w = draw.logits_and_targets(net, x, t, w)
            loss = balanced_loss(logits, t, w, k)
            if config.lovasz_weight > 0:
                loss = loss + config.lovasz_weight * lovasz_softmax(logits, t, (t >= 0) & (w > 0))
            if config.potts_weight > 0 and not is_patch:  # on the supervised window's pixels
                m, c = draw.halo, draw.bands
                loss = loss + config.potts_weight * local_potts_loss(logits, x[:, :c, m:-m, m:-m])
            opt.zero_grad()
            loss.backward()
            opt.step()
            clock.tick()
            loss_value = float(loss.detach())
            yield clock.progress(f"training {self.kind}", f"loss {loss_value:.3f}")
        if not is_patch and config.precise_bn:
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
                net = fold_batchnorm(net)
            # channels-last inference for both networks (the patch CNN's dense form runs 1.5×
            # as fast so as contiguous; docs/benchmarks.md, "Speed")
            self._eval_net = net.to(memory_format=torch.channels_last)
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
            "band_jitter": self.band_jitter,
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
        clf.band_jitter = bool(config.get("band_jitter", True))  # models saved before: True
        return clf
