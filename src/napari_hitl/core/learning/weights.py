"""What happens to a network's weights around training: shrink-and-perturb warm starts, the
filter bank's projection, re-estimated BatchNorm statistics, and BatchNorm folded into
convolutions for inference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_hitl.core.learning.filter_bank import fit_projection
from napari_hitl.core.learning.networks import ModelSpec, SmallUNet, build_model


def shrink_towards_init(net: nn.Module, spec: ModelSpec, lam: float, seed: int) -> None:
    """Warm start by "shrink and perturb" (Ash & Adams, NeurIPS 2020): θ ← λ·θ + (1 − λ)·θ₀.

    Continuing plain training from the last weights makes the network more confident every
    iteration — it keeps fitting the same human strokes — so pixels the model was unsure about
    cross the acceptance threshold without having become more likely to be right (measured on
    sen1floods: test pixels at confidence ≥ 0.95 fell from 99 % to 89 % right over 10
    iterations). Pulling the weights halfway back to their (seeded) initial values keeps what
    was learnt as a head start but resets that over-confidence; ``docs/learning-log.md`` has the
    comparison.
    """
    torch.manual_seed(seed)
    fresh = build_model(spec)
    with torch.no_grad():
        for p_old, p_new in zip(net.parameters(), fresh.parameters(), strict=True):
            p_old.mul_(lam).add_(p_new, alpha=1.0 - lam)


BANK_SAMPLES = 20_000  # pixels the filter bank's principal components are fitted on


def fit_bank_projection(net: nn.Module, images: Sequence[Any], seed: int) -> None:
    """Point a fresh U-Net's filter bank at the first principal components of the bands.

    Fitted on up to :data:`BANK_SAMPLES` normalized pixels drawn evenly from ``images`` (the
    training images, ``LabeledImage``), once per fresh network; warm starts keep it, so the
    features a network learnt on do not move. Nothing to do without a bank or when the bands
    are no more than its components.
    """
    bank = getattr(net, "bank", None)
    if bank is None or bank.projection is None:
        return
    rng = np.random.default_rng(seed)
    per = max(BANK_SAMPLES // max(len(images), 1), 1)
    rows = []
    for im in images:
        flat = im.x.reshape(im.x.shape[0], -1)
        take = rng.choice(flat.shape[1], min(per, flat.shape[1]), replace=False)
        rows.append(flat[:, take].T)
    samples = np.nan_to_num(np.concatenate(rows), nan=0.0, posinf=0.0, neginf=0.0)
    projection = fit_projection(samples, int(bank.projection.shape[0]))
    with torch.no_grad():
        bank.projection.copy_(torch.from_numpy(projection))


def recompute_batchnorm(net: nn.Module, draw: Any, batches: int) -> None:
    """Re-estimate BatchNorm statistics as a plain average over ``batches`` fresh batches.

    "PreciseBN" (Wu & Johnson, 2021). Running statistics with momentum 0.1 mostly reflect the last
    few batches of a short training run; on heterogeneous images (dsb2018 mixes fluorescence,
    bright-field and stained tissue) that noise moved the test mIoU by ±0.07 from one iteration to
    the next. The plain average over 16 batches made the confidence better calibrated there (test
    pixels at confidence ≥ 0.95: ≥ 98 % right in every iteration, see docs/learning-log.md).
    """
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    net.train()
    with torch.no_grad():
        for _ in range(batches):
            draw.features(net, draw()[0])
    for m, momentum in zip(bns, saved, strict=True):
        m.momentum = momentum


def fold_batchnorm(net: SmallUNet) -> SmallUNet:
    """Fold every BatchNorm into the convolution before it (eval-mode inference is ~20 % faster)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for name in ("enc0", "enc1", "enc2", "fuse1", "fuse0"):
        mods = list(getattr(net, name))
        fused: list[nn.Module] = []
        i = 0
        while i < len(mods):
            if (
                isinstance(mods[i], nn.Conv2d)
                and i + 1 < len(mods)
                and isinstance(mods[i + 1], nn.BatchNorm2d)
            ):
                fused.append(fuse_conv_bn_eval(mods[i], mods[i + 1]))
                i += 2
            else:
                fused.append(mods[i])
                i += 1
        setattr(net, name, nn.Sequential(*fused))
    return net
