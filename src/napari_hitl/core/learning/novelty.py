"""A novelty gate for the U-Net's confidence: pixels unlike anything a person labeled are not
trusted, however sure the network is.

A network trained from a few strokes extrapolates: on a kind of pixel no stroke covers (a new
material, a cloud shadow, a stain) it can still be 99 % sure, and the loop then accepts those
pixels wholesale — the benchmark's wrong pushes. After training, the gate summarises the
network's last feature map (24 channels) on the human-labeled pixels: each class's mean and a
covariance (the class's own, shrunk halfway to the covariance shared by all classes). A pixel's
novelty is its squared Mahalanobis distance ``d`` to the nearest class (Lee et al., NeurIPS 2018,
"A simple unified framework for detecting out-of-distribution samples"); ``tau`` is ``factor``
times the 99th percentile of ``d`` over the human pixels themselves. Where ``d > tau`` the logits
are multiplied by ``tau / d``: the prediction (the argmax) stays, its confidence falls towards
uniform, so a threshold keeps such pixels for a person. Measured on five benchmark sets in
``docs/learning-log.md`` ("The novelty gate in the library").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from napari_hitl.core.learning.config import check_weight

MAX_PIXELS = 20_000  # human pixels the statistics are fitted on (a random subset beyond it)
QUANTILE = 0.99  # of the human pixels' own distances, times the factor, is tau
SHRINK = 0.5  # share of each class's own covariance (the rest: the covariance of all classes)
CHUNK = 8_192  # pixels per matrix product (measured fastest of 1k-64k: the products stay in cache)


def check_factor(factor: float) -> None:
    """Refuse a gate factor that is not a finite number ≥ 0 (0 = no gate).

    Raises
    ------
    ValueError
        ``factor`` is negative, NaN or infinite (a gate fitted with it could not be saved).
    """
    check_weight("novelty gate factor (--novelty-gate, 0 = off)", factor)


@dataclass
class NoveltyGate:
    """Class means, whitening matrices and the threshold of the novelty gate.

    Attributes
    ----------
    means
        ``K', D`` feature means of the ``K'`` classes that have human pixels.
    whiten
        ``K', D, D`` matrices ``A_c`` with ``A_c.T @ A_c`` the class's precision, so the squared
        distance is ``|A_c (f - mu_c)|^2``.
    tau
        Squared distance beyond which the logits are scaled by ``tau / d``.
    factor
        The ``factor`` it was fitted with (a model whose weights change refits with it).
    """

    means: np.ndarray
    whiten: np.ndarray
    tau: float
    factor: float
    _stacked: tuple[torch.Tensor, torch.Tensor] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        targets: np.ndarray,
        factor: float,
        rng: np.random.Generator | None = None,
    ) -> NoveltyGate:
        """Fit on ``D, N`` features of human-labeled pixels with their class indices ``N``.

        Raises
        ------
        ValueError
            No pixels, or ``factor`` not a positive finite number.
        """
        check_factor(factor)
        if factor == 0:
            raise ValueError("the novelty factor must be positive, got 0")
        f = np.asarray(features, np.float64)
        y = np.asarray(targets)
        if f.ndim != 2 or y.shape != (f.shape[1],) or y.size == 0:
            raise ValueError("the novelty gate needs D, N features and N class indices (N > 0)")
        if y.size > MAX_PIXELS:
            keep = (rng or np.random.default_rng(0)).choice(y.size, MAX_PIXELS, replace=False)
            f, y = f[:, keep], y[keep]
        classes = np.unique(y)
        means = np.stack([f[:, y == c].mean(1) for c in classes])
        centred = f - means[np.searchsorted(classes, y)].T
        d = f.shape[0]
        shared = centred @ centred.T / max(y.size - 1, 1)
        shared += np.eye(d) * (1e-3 * np.trace(shared) / d + 1e-6)  # ridge: features may be dead
        whiten = []
        for i, c in enumerate(classes):
            fc = f[:, y == c] - means[i][:, None]
            own = fc @ fc.T / max(fc.shape[1] - 1, 1)
            precision = np.linalg.inv(SHRINK * own + (1 - SHRINK) * shared)
            precision = 0.5 * (precision + precision.T)
            whiten.append(np.linalg.cholesky(precision).T)  # P = L L^T, A = L^T
        gate = cls(means.astype(np.float32), np.stack(whiten).astype(np.float32), 1.0, factor)
        own_d = gate.distances(torch.from_numpy(f.astype(np.float32))).numpy()
        gate.tau = float(np.quantile(own_d, QUANTILE)) * float(factor)
        return gate

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance of ``D, N`` features to the nearest class (``N``).

        ``|A_c f - A_c mu_c|^2`` for every class in one matrix product per chunk of pixels, on
        the pixel-major layout the U-Net's channels-last feature maps already have.
        """
        return self._distances_rows(features.float().T)

    def _distances_rows(self, rows: torch.Tensor) -> torch.Tensor:
        k, d = self.means.shape
        if self._stacked is None:
            a = torch.from_numpy(self.whiten.reshape(k * d, d))  # (K' D) x D
            b = torch.from_numpy(np.einsum("kij,kj->ki", self.whiten, self.means).reshape(-1))
            self._stacked = (a.T.contiguous(), -b)
        at, neg_b = self._stacked
        out = torch.empty(rows.shape[0], dtype=torch.float32)
        for i in range(0, rows.shape[0], CHUNK):
            z = torch.addmm(neg_b, rows[i : i + CHUNK], at)  # n x (K' D)
            z.square_()
            out[i : i + CHUNK] = z.view(-1, k, d).sum(2).amin(1)
        return out

    def scale(self, features: torch.Tensor) -> torch.Tensor:
        """``min(1, tau / d)`` per pixel of ``D, h, w`` features (``h, w``)."""
        dch, h, w = features.shape
        rows = features.float().permute(1, 2, 0).reshape(h * w, dch)  # a view if channels-last
        d = self._distances_rows(rows).reshape(h, w)
        return torch.clamp(self.tau / torch.clamp(d, min=1e-9), max=1.0)

    def to_json(self) -> dict[str, Any]:
        """Plain lists and a number (saved with the model's configuration)."""
        return {
            "means": self.means.tolist(),
            "whiten": self.whiten.tolist(),
            "tau": self.tau,
            "factor": self.factor,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], n_features: int | None = None) -> NoveltyGate:
        """Inverse of :meth:`to_json`.

        Raises
        ------
        ValueError
            Missing keys, shapes that do not fit each other (or ``n_features``), values that
            are not finite, or a threshold that is not positive.
        """
        try:
            means = np.asarray(data["means"], np.float32)
            whiten = np.asarray(data["whiten"], np.float32)
            tau = float(data["tau"])
            factor = float(data["factor"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"a damaged novelty gate ({exc})") from exc
        k, d = means.shape if means.ndim == 2 else (0, 0)
        if k == 0 or whiten.shape != (k, d, d) or (n_features is not None and d != n_features):
            raise ValueError(
                f"a novelty gate of shape {means.shape} / {whiten.shape} does not fit the network"
            )
        finite = np.isfinite(means).all() and np.isfinite(whiten).all()
        if not (finite and np.isfinite(tau) and np.isfinite(factor)):
            raise ValueError("a novelty gate with values that are not finite")
        if tau <= 0 or not factor > 0:
            raise ValueError(f"a novelty gate threshold must be positive, got {tau} ({factor}x)")
        return cls(means, whiten, tau, factor)


def human_features(
    feature_fn: Callable[[np.ndarray], np.ndarray],
    images: Sequence[Any],
    human: Sequence[np.ndarray],
    halo: int,
    align: int,
    tile: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Features ``D, N`` and class indices ``N`` of every human-labeled pixel of ``images``.

    ``feature_fn`` maps a padded window (``C, h + 2 halo, w + 2 halo``) to the features of its
    centre (``D, h, w``). Windows are cut exactly as inference cuts them (reflect padding, tiles
    on multiples of ``align``), so the statistics describe the features predictions will see;
    only tiles holding a human pixel are computed.
    """
    from napari_hitl.core.tiling import pad_for_tiles, tile_grid

    feats, targets = [], []
    for im, hum in zip(images, human, strict=True):
        mask = np.asarray(hum, bool) & (im.target >= 0)
        if not mask.any():
            continue
        padded: np.ndarray | None = None
        for y0, y1, x0, x1 in tile_grid(mask.shape, align, tile):
            m = mask[y0:y1, x0:x1]
            if not m.any():
                continue
            if padded is None:
                padded = pad_for_tiles(im.x, halo, align)
            window = np.ascontiguousarray(padded[:, y0 : y1 + 2 * halo, x0 : x1 + 2 * halo])
            f = feature_fn(window)[:, : m.shape[0], : m.shape[1]]
            feats.append(f[:, m])
            targets.append(im.target[y0:y1, x0:x1][m])
    if not feats:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    return np.concatenate(feats, 1), np.concatenate(targets)


def fit_network_gate(
    net: Any,
    images: Sequence[Any],
    human: Sequence[np.ndarray],
    factor: float,
    rng: np.random.Generator,
    tile: int,
) -> NoveltyGate | None:
    """The gate of a trained U-Net (in eval mode, e.g. with BatchNorm folded): fitted on its
    last feature map at every human pixel of ``images`` (the held-out strokes too); ``None``
    when no human pixel has a class."""

    def feature_fn(window: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(window)[None].contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return net.cropped_features(x)[0].float().numpy()

    f, y = human_features(feature_fn, images, human, int(net.halo), int(net.align), tile)
    return NoveltyGate.fit(f, y, factor, rng) if y.size else None
