"""Per-band attribution: how much each band of the image pushes a region towards a class, for
the networks of the loop (the methods of :data:`napari_hitl.core.choices.ATTRIBUTION_METHODS`)."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from napari_hitl.core.choices import ATTRIBUTION_METHODS
from napari_hitl.core.explain.gradcam import (
    ExplainError,
    align_of,
    box_mask,
    check_inputs,
    class_count,
    eval_mode,
    halo_of,
    net_of,
    pad_for,
    padded_window,
    tile_boxes_for,
)
from napari_hitl.core.progress import CancelToken, Progress


# -------------------------------------------------------------------- band attribution
@dataclass
class BandAttribution:
    """What each band contributes to class c in the region.

    Attributes
    ----------
    band_names
        The model's bands, in its order.
    values
        Per band, the mean change of log p(c) per region pixel it accounts for.
    maps
        ``C, H, W`` float32: per band and pixel (input pixels for the gradient methods, the
        region's output pixels for occlusion).
    method
        ``integrated``, ``gradient`` or ``occlusion``.
    score
        Mean log p(c) over the region.
    baseline_score
        Mean log p(c) over the region for the baseline image (gradient methods; ``nan`` for
        occlusion).
    """

    band_names: list[str]
    values: np.ndarray
    maps: np.ndarray
    method: str
    score: float
    baseline_score: float = float("nan")
    extra: dict = field(default_factory=dict)

    @property
    def shares(self) -> np.ndarray:
        """``values`` divided by the sum of their absolute values (signed shares)."""
        total = float(np.abs(self.values).sum())
        return self.values / total if total > 0 else np.zeros_like(self.values)

    def ranking(self) -> list[tuple[str, float, float]]:
        """``(band, value, share)`` sorted by decreasing value (the strongest support first)."""
        order = np.argsort(-self.values, kind="stable")
        sh = self.shares
        return [(self.band_names[i], float(self.values[i]), float(sh[i])) for i in order]


def _log_prob(model: object, net: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    prior = getattr(model, "class_log_prior", None)
    if prior is not None:
        logits = logits + torch.as_tensor(np.asarray(prior, np.float32))[None, :, None, None]
    t = float(getattr(model, "temperature", 1.0))
    return torch.log_softmax(logits / t, dim=1)


def band_attribution_job(
    model: object,
    x: np.ndarray,
    class_index: int,
    region: np.ndarray,
    *,
    band_names: list[str] | None = None,
    method: str = "integrated",
    steps: int = 8,
    valid: np.ndarray | None = None,
    tile: int | None = 512,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, BandAttribution]:
    """Per-band attribution of class ``class_index`` over ``region``; a progress generator.

    Parameters
    ----------
    model
        A :class:`~napari_hitl.core.learning.net.NetClassifier` (its prior and temperature are
        used) or a bare network.
    x
        ``C, H, W`` normalized image (not modified).
    class_index, region
        The class and the ``H, W`` bool region.
    band_names
        Names for the bands (default: the model's normalization, else ``band 0..``).
    method
        One of :data:`ATTRIBUTION_METHODS`.
    steps
        Integrated-gradients steps (midpoint rule).
    valid
        ``H, W`` bool: the pixels whose values define the per-band baseline mean (default all).
    tile, cancel
        Tile edge and cancel token.

    Returns
    -------
    BandAttribution

    Raises
    ------
    ExplainError
        Unknown method, bad shapes, an empty region or a random forest.
    """
    if method not in ATTRIBUTION_METHODS:
        raise ExplainError(
            f"unknown attribution method {method!r}; choose {', '.join(ATTRIBUTION_METHODS)}"
        )
    net = net_of(model)
    region = np.asarray(region, bool)
    check_inputs(x, region, class_index, class_count(net))
    c, h, w = x.shape
    if band_names is None:
        norm = getattr(model, "normalization", None)
        band_names = (
            list(norm.channel_names) if norm is not None else [f"band {i}" for i in range(c)]
        )
    halo, align = halo_of(net), align_of(net)
    sel = np.asarray(valid, bool) if valid is not None else np.ones((h, w), bool)
    means = np.array([float(x[b][sel].mean()) if sel.any() else 0.0 for b in range(c)], np.float32)
    base = torch.from_numpy(means)[None, :, None, None]
    padded = pad_for(net, x)
    boxes = [b for b in tile_boxes_for(net, (h, w), tile) if region[b[0] : b[1], b[2] : b[3]].any()]
    ph, pw = padded.shape[1:]
    acc = np.zeros((c, ph, pw), np.float64)  # input-pixel maps in padded coordinates
    totals = np.zeros(c, np.float64)
    score = base_score = 0.0
    n_region = float(region.sum())
    per_tile = c if method == "occlusion" else (steps if method == "integrated" else 1)
    done = 0
    total_steps = len(boxes) * per_tile
    with eval_mode(net):
        for box in boxes:
            r0, r1, c0, c1 = box
            win = padded_window(padded, box, halo, align)
            wh, ww = win.shape[-2:]
            m = box_mask(region, box, (wh - 2 * halo, ww - 2 * halo))  # the tile's region pixels
            if method == "occlusion":
                with torch.no_grad():
                    lp = _log_prob(model, net, net(win))[0, class_index]
                    ref = lp[m].sum()
                    score += float(ref)
                    for b in range(c):
                        if cancel is not None:
                            cancel.raise_if_cancelled()
                        occl = win.clone()
                        occl[:, b] = base[0, b]
                        lpb = _log_prob(model, net, net(occl))[0, class_index]
                        drop = torch.where(m, lp - lpb, torch.zeros_like(lp))
                        totals[b] += float(drop.sum())
                        acc[b, halo + r0 : halo + r1, halo + c0 : halo + c1] += drop[
                            : r1 - r0, : c1 - c0
                        ].numpy()
                        done += 1
                        yield Progress(done, total_steps, f"occluding band {band_names[b]}")
                continue
            diff = win - base
            alphas = [(i + 0.5) / steps for i in range(steps)] if method == "integrated" else [1.0]
            grad_sum = torch.zeros_like(win)
            for a in alphas:
                if cancel is not None:
                    cancel.raise_if_cancelled()
                xi = (base + a * diff).requires_grad_(True)
                with torch.enable_grad():
                    s = _log_prob(model, net, net(xi))[0, class_index][m].sum()
                    (g,) = torch.autograd.grad(s, xi)
                grad_sum += g
                done += 1
                yield Progress(done, total_steps, f"{method} gradients: {done}/{total_steps}")
            attr = (grad_sum / len(alphas) * diff)[0].numpy()
            acc[:, r0 : r0 + wh, c0 : c0 + ww] += attr
            with torch.no_grad():
                score += float(_log_prob(model, net, net(win))[0, class_index][m].sum())
                base_score += float(
                    _log_prob(model, net, net(base.expand_as(win).contiguous()))[0, class_index][
                        m
                    ].sum()
                )
    maps = acc[:, halo : halo + h, halo : halo + w].astype(np.float32)
    if method != "occlusion":
        totals = maps.reshape(c, -1).sum(axis=1)  # contributions that fell on padding dropped
    return BandAttribution(
        list(band_names),
        (totals / n_region).astype(np.float64),
        maps,
        method,
        score / n_region,
        base_score / n_region if method != "occlusion" else float("nan"),
    )


def band_attribution(
    model: object, x: np.ndarray, class_index: int, region: np.ndarray, **kw
) -> BandAttribution:
    """:func:`band_attribution_job` run to its end (no progress)."""
    from napari_hitl.core.progress import run_to_end

    return run_to_end(band_attribution_job(model, x, class_index, region, **kw))
