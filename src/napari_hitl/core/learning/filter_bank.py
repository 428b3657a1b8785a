"""A fixed multiscale filter bank in torch: ilastik-style features for the pixel networks.

For every (optionally PCA-projected) input channel and every scale ``σ`` in ``sigmas`` the bank
computes, from Gaussian derivatives of the image:

==========================  ========  ===============================================  =========
kind                        outputs   definition (``L = G_σ * I``)                      scaling
==========================  ========  ===============================================  =========
``gaussian``                1         ``L``                                            1
``gradient``                1         ``|∇L| = sqrt(Lx² + Ly²)``                       ``σ``
``laplacian``               1         ``Lxx + Lyy`` (Laplacian of Gaussian)            ``σ²``
``hessian``                 2         eigenvalues of ``[[Lyy, Lxy], [Lxy, Lxx]]``,     ``σ²``
                                      largest first
``structure_tensor``        2         eigenvalues of ``G_{σ/2} * (∇L ∇Lᵀ)``,           ``σ²``
                                      largest first
==========================  ========  ===============================================  =========

**Scale normalisation.** Every derivative of order ``n`` is multiplied by ``σⁿ`` (Lindeberg's
γ = 1 normalisation), so an edge of contrast 1 gives a gradient feature of ``1/√(2π) ≈ 0.4`` at
every scale and all features of images normalised to ``[0, 1]`` stay within a few units — they
feed a network with BatchNorm. The structure tensor holds products of two first derivatives,
hence ``σ²``.

**Structure tensor convention.** ilastik's: the gradient at the *inner* scale ``σ``, its outer
product smoothed at the *outer* scale ``σ/2`` (``OUTER_SCALE``).

**Kernels.** Sampled Gaussians (as ``scipy.ndimage.gaussian_filter`` builds them) and their
analytic derivatives, moment-corrected so that a constant gives 0 and a ramp/parabola its exact
derivative (scipy's truncated second derivative leaks ~1e-3 of the mean, which σ² would turn
into ~2 % of a σ = 8 Laplacian), truncated at ``TRUNCATE = 4`` σ (radius ``int(4σ + 0.5)``),
applied separably (rows, then columns), one image plane at a time, as sums of shifted weighted
copies (:func:`_conv_axis`: same values as ``conv2d(..., groups=C)`` with ``1×k`` kernels,
5–9× faster on one CPU thread). Scales ``σ ≥ √2 · DERIVATIVE_SIGMA`` use the Gaussian semigroup
``G_σ = G_{DERIVATIVE_SIGMA} * G_√(σ² − DERIVATIVE_SIGMA²)``: the image is first smoothed at
``√(σ² − 1)`` and all derivatives are then taken with short ``σ = 1`` kernels (2–3× cheaper at
σ = 4–8). Every feature matches scipy/scikit-image references (truncate 8) within 3e-3 of its
range (measured ≤ 1.5e-3; ``tests/core/learning/test_filter_bank.py``).

**Borders and tiling.** With ``padding="valid"`` (the default) no convolution pads: the output
covers only the pixels at least :attr:`FilterBank.halo` from the input's border, so a tile cut
with that halo gives exactly the whole-image values (to float rounding) — as
:class:`~napari_hitl.core.learning.networks.SmallUNet` crops its own halo and
:func:`~napari_hitl.core.tiling.tiled_apply` cuts tiles. A network fed by the bank needs a halo of
``bank.halo + net.halo``. ``padding="reflect"`` reflect-pads the input by the halo first and
returns the input's size (for whole images; its border pixels then depend on the padding).

**Many bands.** :func:`fit_projection` fits a PCA on pixel samples; ``FilterBank(...,
projection=P)`` applies it as a 1×1 convolution before the filters, so 15 bands become 3
components × ``features_per_channel`` channels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_SIGMAS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
"""ilastik's default scales minus 0.3, 0.7 and 16 (as
:data:`napari_hitl.core.learning.forest.SIGMAS`)."""

FEATURE_KINDS: dict[str, int] = {
    "gaussian": 1,
    "gradient": 1,
    "laplacian": 1,
    "hessian": 2,
    "structure_tensor": 2,
}
"""Feature kinds in output order, with the number of output channels of each."""

TRUNCATE = 4.0
"""Kernel radius in σ (scipy's default): radius ``int(TRUNCATE * σ + 0.5)``."""

DERIVATIVE_SIGMA = 1.0
"""The scale of the derivative kernels applied after pre-smoothing for large σ (semigroup)."""

OUTER_SCALE = 0.5
"""Structure tensor outer scale as a fraction of σ (ilastik: outer = σ/2, inner = σ)."""


# Derivative pairs (order along rows y, order along columns x).
_L, _LX, _LY, _LXX, _LYY, _LXY = (0, 0), (0, 1), (1, 0), (0, 2), (2, 0), (1, 1)
_NEEDS: dict[str, tuple[tuple[int, int], ...]] = {
    "gaussian": (_L,),
    "gradient": (_LX, _LY),
    "laplacian": (_LXX, _LYY),
    "hessian": (_LXX, _LYY, _LXY),
    "structure_tensor": (_LX, _LY),
}


def kernel_radius(sigma: float) -> int:
    """Half-width of the truncated Gaussian kernel at ``sigma`` (scipy's rule).

    Parameters
    ----------
    sigma : float
        Standard deviation in pixels.

    Returns
    -------
    int
        ``int(TRUNCATE * sigma + 0.5)``.
    """
    return int(TRUNCATE * sigma + 0.5)


def gaussian_kernel1d(sigma: float, order: int = 0, radius: int | None = None) -> np.ndarray:
    """A sampled 1-D Gaussian (``order`` 0) or its moment-corrected analytic derivative.

    The Gaussian is scipy's (normalised to sum 1); the derivatives are scipy's analytic ones,
    rescaled (order 1) or shifted and rescaled (order 2) so that they are exact on ``x`` and
    ``x²`` and sum to 0 despite the truncation.

    Parameters
    ----------
    sigma : float
        Standard deviation in pixels (> 0).
    order : int
        Derivative order, 0, 1 or 2.
    radius : int, optional
        Half-width; :func:`kernel_radius` by default.

    Returns
    -------
    np.ndarray
        ``2 * radius + 1`` float64 weights for a *correlation* (``conv2d``), i.e. already
        flipped so that correlating with it equals scipy's convolution.
    """
    if radius is None:
        radius = kernel_radius(sigma)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 * x**2 / sigma**2)
    phi /= phi.sum()
    if order == 0:
        k = phi
    elif order == 1:
        k = -x * phi
        k /= -(x * k).sum()  # exact on a ramp: ``d/dx x = 1``
    elif order == 2:
        k = (x**2 - (x**2 * phi).sum()) * phi  # sums to 0: no response to a constant
        k *= 2.0 / (x**2 * k).sum()  # exact on a parabola: ``d²/dx² x² = 2``
    else:
        raise ValueError(f"derivative order must be 0, 1 or 2, got {order}")
    return k[::-1].copy()  # correlation with the flipped kernel = convolution


@dataclass(frozen=True)
class _Scale:
    """How one σ is computed: optional pre-smoothing, then derivative kernels at ``dsigma``."""

    sigma: float
    pre_sigma: float  # 0: no pre-smoothing
    dsigma: float
    r_pre: int
    r_deriv: int
    r_outer: int  # 0 without structure tensor

    @property
    def radius(self) -> int:
        return self.r_pre + self.r_deriv + self.r_outer


def _plan(sigma: float, structure: bool) -> _Scale:
    r_outer = kernel_radius(OUTER_SCALE * sigma) if structure else 0
    if sigma >= math.sqrt(2.0) * DERIVATIVE_SIGMA:
        pre = math.sqrt(sigma**2 - DERIVATIVE_SIGMA**2)
        return _Scale(
            sigma,
            pre,
            DERIVATIVE_SIGMA,
            kernel_radius(pre),
            kernel_radius(DERIVATIVE_SIGMA),
            r_outer,
        )
    return _Scale(sigma, 0.0, sigma, 0, kernel_radius(sigma), r_outer)


def _safe_sqrt(v: torch.Tensor) -> torch.Tensor:
    """``sqrt(v)`` for ``v ≥ 0`` (exact), 0 elsewhere, with a zero (not NaN) gradient at 0."""
    pos = v > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, v, torch.ones_like(v))), 0.0)


def _eig2(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues of the symmetric ``[[a, b], [b, c]]``, largest first."""
    mean = 0.5 * (a + c)
    root = _safe_sqrt((0.5 * (a - c)) ** 2 + b * b)
    return mean + root, mean - root


class FilterBank(nn.Module):
    """Fixed multiscale Gaussian-derivative features per channel (no trainable parameters).

    Parameters
    ----------
    in_channels : int
        Channels ``C`` of the input ``N, C, H, W``.
    sigmas : sequence of float
        Scales in pixels, each > 0.
    features : sequence of str
        Kinds from :data:`FEATURE_KINDS`, output in that dictionary's order whatever the order
        given here.
    projection : np.ndarray or torch.Tensor, optional
        ``K, C`` matrix (e.g. from :func:`fit_projection`) applied as a 1×1 convolution before
        the filters; the filters then run on ``K`` channels. Saved in the ``state_dict``.
    padding : {"valid", "reflect"}
        ``"valid"``: output ``N, out_channels, H - 2*halo, W - 2*halo`` with no padding
        anywhere (tile-invariant). ``"reflect"``: reflect-pad by ``halo``, output ``H, W``.

    Notes
    -----
    Output channel ``c * features_per_channel + s * per_scale + j`` is feature ``j`` (in
    :data:`FEATURE_KINDS` order) at ``sigmas[s]`` of filtered channel ``c``;
    :meth:`feature_names` lists them. ``out_channels = K * len(sigmas) * per_scale`` with
    ``K = C`` (or the projection's rows) and ``per_scale`` = 7 for all kinds.
    """

    def __init__(
        self,
        in_channels: int,
        sigmas: Sequence[float] = DEFAULT_SIGMAS,
        features: Sequence[str] = tuple(FEATURE_KINDS),
        projection: np.ndarray | torch.Tensor | None = None,
        padding: Literal["valid", "reflect"] = "valid",
    ) -> None:
        super().__init__()
        if int(in_channels) < 1:
            raise ValueError(f"in_channels must be at least 1, got {in_channels}")
        sigmas = tuple(float(s) for s in sigmas)
        if not sigmas:
            raise ValueError("sigmas is empty; give at least one scale, e.g. (1.0, 2.0, 4.0)")
        if not all(math.isfinite(s) and s > 0 for s in sigmas):
            raise ValueError(f"every sigma must be a finite number > 0, got {sigmas}")
        unknown = [f for f in features if f not in FEATURE_KINDS]
        if unknown or not features:
            raise ValueError(
                f"unknown or no feature kinds {unknown or list(features)}; "
                f"choose from {', '.join(FEATURE_KINDS)}"
            )
        if padding not in ("valid", "reflect"):
            raise ValueError(f"padding must be 'valid' or 'reflect', got {padding!r}")
        self.in_channels = int(in_channels)
        self.sigmas = sigmas
        self.features = tuple(k for k in FEATURE_KINDS if k in set(features))
        self.padding = padding
        self._needs = sorted({p for k in self.features for p in _NEEDS[k]})
        structure = "structure_tensor" in self.features
        self._plans = [_plan(s, structure) for s in sigmas]
        self._halo = max(p.radius for p in self._plans)

        if projection is not None:
            proj = torch.as_tensor(np.asarray(projection, dtype=np.float32))
            if proj.ndim != 2 or proj.shape[1] != self.in_channels or proj.shape[0] < 1:
                raise ValueError(
                    f"projection must be a (K, {self.in_channels}) matrix for "
                    f"{self.in_channels} input channels, got shape {tuple(proj.shape)}"
                )
            self.register_buffer("projection", proj.clone())
        else:
            self.projection: torch.Tensor | None = None

        # Kernels depend only on the configuration: non-persistent buffers (move with .to()).
        for i, p in enumerate(self._plans):
            if p.pre_sigma:
                self.register_buffer(
                    f"_pre{i}",
                    torch.tensor(gaussian_kernel1d(p.pre_sigma), dtype=torch.float32),
                    persistent=False,
                )
            for order in (0, 1, 2):
                self.register_buffer(
                    f"_d{i}_{order}",
                    torch.tensor(gaussian_kernel1d(p.dsigma, order), dtype=torch.float32),
                    persistent=False,
                )
            if p.r_outer:
                self.register_buffer(
                    f"_outer{i}",
                    torch.tensor(gaussian_kernel1d(OUTER_SCALE * p.sigma), dtype=torch.float32),
                    persistent=False,
                )

    @property
    def halo(self) -> int:
        """Pixels lost on each side in ``"valid"`` mode: the largest total kernel radius."""
        return self._halo

    @property
    def filtered_channels(self) -> int:
        """Channels the filters run on: the projection's rows, else ``in_channels``."""
        return self.in_channels if self.projection is None else int(self.projection.shape[0])

    @property
    def per_scale(self) -> int:
        """Output channels per filtered channel and scale (7 with all kinds)."""
        return sum(FEATURE_KINDS[k] for k in self.features)

    @property
    def features_per_channel(self) -> int:
        """Output channels per filtered channel: ``len(sigmas) * per_scale``."""
        return len(self.sigmas) * self.per_scale

    @property
    def out_channels(self) -> int:
        """``filtered_channels * len(sigmas) * per_scale``."""
        return self.filtered_channels * self.features_per_channel

    def feature_names(self, channel_names: Sequence[str] | None = None) -> list[str]:
        """Names of the output channels in order, e.g. ``"b0 hessian[0] σ=2"``.

        Parameters
        ----------
        channel_names : sequence of str, optional
            Names of the filtered channels (``pc0``… with a projection, ``c0``… otherwise).

        Returns
        -------
        list of str
            ``out_channels`` names.
        """
        if channel_names is None:
            prefix = "c" if self.projection is None else "pc"
            channel_names = [f"{prefix}{i}" for i in range(self.filtered_channels)]
        if len(channel_names) != self.filtered_channels:
            raise ValueError(
                f"{len(channel_names)} channel names for {self.filtered_channels} channels"
            )
        names = []
        for c in channel_names:
            for s in self.sigmas:
                for k in self.features:
                    n = FEATURE_KINDS[k]
                    names += [f"{c} {k}{f'[{j}]' if n > 1 else ''} σ={s:g}" for j in range(n)]
        return names

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        """The pixels of ``x`` that a ``"valid"`` output covers (to stack raw bands beside it).

        Parameters
        ----------
        x : torch.Tensor
            ``..., H, W``.

        Returns
        -------
        torch.Tensor
            ``..., H - 2*halo, W - 2*halo`` (``x`` itself in ``"reflect"`` mode).
        """
        h = self._halo
        if self.padding == "reflect" or h == 0:
            return x
        return x[..., h : x.shape[-2] - h, h : x.shape[-1] - h]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features of ``x`` (``N, C, H, W`` float) → ``N, out_channels, h, w``.

        ``h, w`` is ``H - 2*halo, W - 2*halo`` in ``"valid"`` mode, ``H, W`` in ``"reflect"``.
        """
        if x.ndim != 4:
            raise ValueError(f"FilterBank expects N, C, H, W input, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"FilterBank was built for {self.in_channels} channels, got {x.shape[1]}"
            )
        if not x.is_floating_point():
            raise ValueError(f"FilterBank expects a floating-point input, got {x.dtype}")
        h = self._halo
        if self.projection is not None:
            x = F.conv2d(x, self.projection.to(x.dtype)[:, :, None, None])
        if self.padding == "reflect":
            if min(x.shape[-2:]) <= h:
                raise ValueError(
                    f"reflect padding needs an image larger than the halo ({h} px), got "
                    f"{tuple(x.shape[-2:])}"
                )
            x = F.pad(x, (h, h, h, h), mode="reflect")
        if min(x.shape[-2:]) <= 2 * h:
            raise ValueError(
                f"the input ({tuple(x.shape[-2:])}) must be larger than twice the halo "
                f"({h} px) on both axes for 'valid' filtering"
            )
        n, c = x.shape[:2]
        ho, wo = x.shape[-2] - 2 * h, x.shape[-1] - 2 * h
        out = x.new_empty(n, c * self.features_per_channel, ho, wo)
        view = out.view(n, c, len(self.sigmas), self.per_scale, ho, wo)
        # One image plane at a time: its intermediates (~1.5 MB each on a 616² tile) stay in
        # cache, which made 3 bands 1.4× faster than filtering all channels at once.
        for b in range(n):
            for ch in range(c):
                plane = x[b : b + 1, ch : ch + 1]
                for i in range(len(self._plans)):
                    for j, feat in enumerate(self._scale_features(plane, i, h)):
                        view[b : b + 1, ch : ch + 1, i, j] = feat
        return out

    # -- internals -------------------------------------------------------------------------

    def _kernel(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        return getattr(self, name).to(dtype)

    def _scale_features(self, x: torch.Tensor, i: int, h: int) -> list[torch.Tensor]:
        """The ``per_scale`` features (each ``N, C, ho, wo``) at ``sigmas[i]``."""
        p = self._plans[i]
        dt = x.dtype
        off = h - p.radius
        base = x[..., off : x.shape[-2] - off, off : x.shape[-1] - off] if off else x
        if p.pre_sigma:
            pre = self._kernel(f"_pre{i}", dt)
            base = _conv_axis(_conv_axis(base, [pre], -2)[0], [pre], -1)[0]
        ro = p.r_outer
        # Pairs feeding the structure tensor are needed ro px further out than the others.
        margin = {q: (ro if q in (_LX, _LY) else 0) for q in self._needs}
        d = {}
        for oy in sorted({q[0] for q in self._needs}):
            pairs = [q for q in self._needs if q[0] == oy]
            m_oy = max(margin[q] for q in pairs)
            rows = base[..., ro - m_oy : base.shape[-2] - (ro - m_oy), :]
            ry = _conv_axis(rows, [self._kernel(f"_d{i}_{oy}", dt)], -2)[0]
            for m in sorted({margin[q] for q in pairs}):
                group = [q for q in pairs if margin[q] == m]
                cut_r, cut_c = m_oy - m, ro - m
                src = ry[..., cut_r : ry.shape[-2] - cut_r, cut_c : ry.shape[-1] - cut_c]
                outs = _conv_axis(src, [self._kernel(f"_d{i}_{q[1]}", dt) for q in group], -1)
                d.update(zip(group, outs, strict=True))

        def inner(t: torch.Tensor) -> torch.Tensor:  # Lx, Ly carry the structure margin ro
            return t[..., ro:-ro, ro:-ro] if ro else t

        s, s2 = p.sigma, p.sigma * p.sigma
        feats: list[torch.Tensor] = []
        for k in self.features:
            if k == "gaussian":
                feats.append(d[_L])
            elif k == "gradient":
                feats.append(s * _safe_sqrt(inner(d[_LX]) ** 2 + inner(d[_LY]) ** 2))
            elif k == "laplacian":
                feats.append(s2 * (d[_LXX] + d[_LYY]))
            elif k == "hessian":
                feats += [s2 * e for e in _eig2(d[_LYY], d[_LXY], d[_LXX])]
            else:  # structure_tensor
                gx, gy = d[_LX], d[_LY]
                outer = self._kernel(f"_outer{i}", dt)
                prods = torch.stack([gy * gy, gx * gy, gx * gx])
                sm = _conv_axis(_conv_axis(prods, [outer], -2)[0], [outer], -1)[0]
                feats += [s2 * e for e in _eig2(sm[0], sm[1], sm[2])]
        return feats


def _conv_axis(x: torch.Tensor, kernels: Sequence[torch.Tensor], axis: int) -> list[torch.Tensor]:
    """Valid correlation of every channel of ``x`` with each 1-D kernel along ``axis``.

    Computed as a sum of shifted, weighted copies (one fused multiply-add per tap over the whole
    tensor). On one CPU thread this is 5–9× faster than ``conv2d(..., groups=C)`` with ``1×k``
    kernels (measured 0.8 ms against 7 ms at k = 9, 7 ms against 8.5–18 ms at k = 65 on a
    3 × 616² tile) and gives the same values; it is differentiable like any torch arithmetic.
    """
    n = x.shape[axis] - kernels[0].shape[0] + 1
    outs = []
    for kernel in kernels:
        taps = kernel.tolist()
        acc = x.narrow(axis, 0, n) * taps[0]
        for t, w in enumerate(taps[1:], start=1):
            if w != 0.0:
                acc = acc.add_(x.narrow(axis, t, n), alpha=w)
        outs.append(acc)
    return outs


def fit_projection(samples: np.ndarray, n_components: int = 3, whiten: bool = False) -> np.ndarray:
    """Principal axes of pixel samples, for ``FilterBank(..., projection=...)``.

    Parameters
    ----------
    samples : np.ndarray
        ``P, C`` pixel values (P pixels, C bands), finite; e.g. a random subset of an image's
        normalised pixels.
    n_components : int
        Rows of the result (≤ C).
    whiten : bool
        Divide each row by the standard deviation along it, so that every component has unit
        variance on the samples (rows are then orthogonal but not unit length).

    Returns
    -------
    np.ndarray
        ``n_components, C`` float32, rows in decreasing explained variance, orthonormal (unless
        ``whiten``), each signed so that its largest-magnitude entry is positive (deterministic
        whatever the eigen-solver's sign). The components are not centred: the projection is a
        bias-free 1×1 convolution, so the mean only offsets the ``gaussian`` features.
    """
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 2:
        raise ValueError(f"samples must be a (P, C) array, got shape {samples.shape}")
    p, c = samples.shape
    if not 1 <= n_components <= c:
        raise ValueError(f"n_components must be between 1 and the {c} bands, got {n_components}")
    if p < 2:
        raise ValueError(f"need at least 2 pixel samples to fit a projection, got {p}")
    if not np.isfinite(samples).all():
        raise ValueError("samples contain NaN or infinite values; drop those pixels first")
    centred = samples - samples.mean(0)
    cov = centred.T @ centred / (p - 1)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1][:n_components]
    rows = evecs[:, order].T
    idx = np.argmax(np.abs(rows), axis=1)
    rows *= np.sign(rows[np.arange(n_components), idx])[:, None]
    if whiten:
        rows /= np.sqrt(np.maximum(evals[order], 1e-12))[:, None]
    return rows.astype(np.float32)
