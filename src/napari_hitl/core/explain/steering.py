"""Attention guidance by clicks (the attention-guiding paper, §3.6): fine-tune so that Grad-CAM
looks where the user says, and away from where the user says it must not.

For each guided image the user gives a class c, the region whose class-c score is explained (as
for :func:`~napari_hitl.core.explain.gradcam.grad_cam_job`), *positive* clicks (where the network
should
look) and *negative* clicks. A negative click selects the superpixel of the Grad-CAM map under
it (Felzenszwalb's graph segmentation or SLIC on the map), which the network must ignore.

The network is fine-tuned on

    loss = w_g · (loss_pos + loss_neg) + w_c · loss_c        (defaults w_g = 0.75, w_c = 0.25)

- loss_pos = ‖barycenter(CAM) − mean(positive clicks)‖₂ in normalized coordinates (row / H,
  col / W of the guided window), eq. 3;
- loss_neg = the share of the CAM's mass inside the negative regions, eq. 4 (the paper sums the
  map's values there; dividing by the total mass makes the two terms comparable in size);
- loss_c = the usual class-balanced, masked cross-entropy on the project's labels, so that
  guidance does not forget them.

The CAM is differentiable (:func:`~napari_hitl.core.explain.gradcam.differentiable_cam`, double
back-propagation). BatchNorm statistics are frozen (eval mode) during guidance. The classifier
passed in is never modified: guidance returns a fine-tuned copy.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from napari_hitl.core.choices import SUPERPIXEL_METHODS
from napari_hitl.core.explain.gradcam import (
    ExplainError,
    bounding_box,
    default_layer,
    differentiable_cam,
    eval_mode,
    grow_box,
    pad_for,
    padded_window,
)
from napari_hitl.core.jsonable import Jsonable
from napari_hitl.core.learning.batches import PatchBatches
from napari_hitl.core.learning.data import LabeledImage
from napari_hitl.core.learning.losses import balanced_loss
from napari_hitl.core.learning.net import NetClassifier
from napari_hitl.core.progress import CancelToken, Progress

MASS_FLOOR = 0.1  # uniform mass added to the CAM, as a share of its mass before guidance
GUIDE_LR = {"unet": 1e-4, "patch-cnn": 1e-2}  # measured: unet at 1e-3 switches its map off


@dataclass
class GuideTarget:
    """One image's guidance.

    Attributes
    ----------
    x
        ``C, H, W`` normalized image (or a window of it with the network's halo of context).
    class_index
        The class whose attention is guided.
    region
        ``H, W`` bool: the pixels whose class-c score the CAM explains.
    positive
        ``(row, col)`` clicks where the network should look.
    negative
        ``H, W`` bool: the regions it must ignore (``None``: none).
    name
        For reports.
    """

    x: np.ndarray
    class_index: int
    region: np.ndarray
    positive: list[tuple[float, float]] = field(default_factory=list)
    negative: np.ndarray | None = None
    name: str = ""

    def __post_init__(self) -> None:
        h, w = self.x.shape[1:]
        if self.region.shape != (h, w):
            raise ExplainError(
                f"region shape {self.region.shape} differs from the image's {(h, w)}"
            )
        if self.negative is not None and self.negative.shape != (h, w):
            raise ExplainError("the negative regions must have the image's shape")
        for r, c in self.positive:
            if not (0 <= r < h and 0 <= c < w):
                raise ExplainError(f"positive click ({r}, {c}) lies outside the image ({h}×{w})")
        if not self.positive and (self.negative is None or not self.negative.any()):
            raise ExplainError(
                f"{self.name or 'the image'} has no click: left-click where the network should "
                "look, right-click a region it must ignore"
            )


@dataclass
class SteerConfig(Jsonable):
    """Attention-steering settings (CLI/GUI options; test-time hints have their own
    :class:`napari_hitl.core.hints.guide.GuideConfig`).

    Attributes
    ----------
    steps
        Optimizer steps.
    lr
        AdamW learning rate (``None``: :data:`GUIDE_LR` of the model).
    w_g, w_c
        Weights of the guidance and classification losses.
    layer
        Grad-CAM layer (default: :func:`~napari_hitl.core.explain.gradcam.default_layer`).
    batch_size, patch
        Training crops per step for ``loss_c`` and their edge.
    seed
        Makes guidance deterministic.
    """

    steps: int = 30
    lr: float | None = None
    w_g: float = 0.75
    w_c: float = 0.25
    layer: str | None = None
    batch_size: int = 8
    patch: int = 64
    seed: int = 0


@dataclass
class AttentionMeasures:
    """Where one image's Grad-CAM sits relative to the user's clicks.

    Attributes
    ----------
    distance
        Distance from the CAM's barycenter to the positive clicks' centre (normalized
        coordinates; ``nan`` without positive clicks).
    negative_share
        Share of the CAM's mass inside the negative regions (``nan`` without them).
    barycenter
        ``(row, col)`` of the CAM's barycenter, in pixels.
    mass
        The CAM's total mass relative to its mass before guidance (1 before; near 0 means the
        map faded out rather than moved).
    """

    distance: float
    negative_share: float
    barycenter: tuple[float, float]
    mass: float = 1.0


@dataclass
class SteerReport(Jsonable):
    """What a guidance run did: measures before and after, and the losses per step."""

    steps: int
    seconds: float
    config: dict[str, Any]
    names: list[str]
    before: list[AttentionMeasures]
    after: list[AttentionMeasures]
    losses: list[dict[str, float]]


def negative_region(
    cam: np.ndarray,
    point: tuple[int, int],
    method: str = "felzenszwalb",
    *,
    scale: float = 100.0,
    n_segments: int = 64,
) -> np.ndarray:
    """The superpixel of the Grad-CAM map ``cam`` under ``point`` (a negative click).

    Parameters
    ----------
    cam
        ``H, W`` map in [0, 1].
    point
        ``(row, col)`` of the click.
    method
        ``felzenszwalb`` (graph segmentation, ``scale``) or ``slic`` (``n_segments``).

    Returns
    -------
    np.ndarray
        ``H, W`` bool mask of the superpixel.

    Raises
    ------
    ExplainError
        Unknown method, or a point outside the map.
    """
    from skimage.segmentation import felzenszwalb, slic

    h, w = cam.shape
    r, c = round(point[0]), round(point[1])
    if not (0 <= r < h and 0 <= c < w):
        raise ExplainError(f"click ({r}, {c}) lies outside the image ({h}×{w})")
    img = np.asarray(cam, np.float64)
    if method == "felzenszwalb":
        seg = felzenszwalb(img, scale=scale, sigma=0.8, min_size=max(16, h * w // 2000))
    elif method == "slic":
        seg = slic(img, n_segments=n_segments, compactness=0.1, channel_axis=None, start_label=0)
    else:
        raise ExplainError(
            f"unknown superpixel method {method!r}; choose {', '.join(SUPERPIXEL_METHODS)}"
        )
    return seg == seg[r, c]


def _coords(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    cols = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    return rows[:, None].expand(h, w), cols[None, :].expand(h, w)


def attention_losses(
    cam: torch.Tensor,
    positive: Sequence[tuple[float, float]],
    negative: torch.Tensor | None,
    reference: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``loss_pos``, ``loss_neg`` (eq. 3, 4) of an ``H, W`` map, and its barycenter (pixels).

    A uniform floor of :data:`MASS_FLOOR` × ``reference`` (the map's mass before guidance) is
    added to the map's mass. Without it, the cheapest way to lower both losses is to switch the
    map off (ReLU of a negative sum everywhere): the barycenter of a vanishing map is undefined
    and its negative mass is zero. With the floor, a map that fades drifts to the window's
    centre and is penalised by ``loss_pos`` instead.

    Parameters
    ----------
    cam
        The (unnormalized, ≥ 0) Grad-CAM map.
    positive
        ``(row, col)`` clicks; none gives ``loss_pos = 0``.
    negative
        ``H, W`` bool regions to ignore; ``None`` gives ``loss_neg = 0``.
    reference
        The map's total mass before guidance (default: this map's, detached).
    """
    h, w = cam.shape
    rows, cols = _coords(h, w)
    ref = float(cam.detach().sum()) if reference is None else float(reference)
    floor = MASS_FLOOR * max(ref, 1e-6) / (h * w)  # per pixel
    mass = cam.sum() + floor * h * w
    by = ((cam * rows).sum() + floor * rows.sum()) / mass
    bx = ((cam * cols).sum() + floor * cols.sum()) / mass
    zero = cam.sum() * 0.0
    if positive:
        py = float(np.mean([(p[0] + 0.5) / h for p in positive]))
        px = float(np.mean([(p[1] + 0.5) / w for p in positive]))
        loss_pos = torch.sqrt((by - py) ** 2 + (bx - px) ** 2 + 1e-12)
    else:
        loss_pos = zero
    loss_neg = cam[negative].sum() / mass if negative is not None and bool(negative.any()) else zero
    return loss_pos, loss_neg, torch.stack([by * h - 0.5, bx * w - 0.5])


class _Prepared:
    """A target's padded input window and tensors, ready for the differentiable CAM."""

    def __init__(self, net: torch.nn.Module, t: GuideTarget) -> None:
        h, w = t.x.shape[1:]
        padded = pad_for(net, t.x)
        self.window = padded_window(
            padded, (0, h, 0, w), int(net.halo), int(getattr(net, "align", 1))
        )
        oh, ow = (
            self.window.shape[-2] - 2 * int(net.halo),
            self.window.shape[-1] - 2 * int(net.halo),
        )
        region = np.zeros((oh, ow), bool)
        region[:h, :w] = t.region
        self.region = torch.from_numpy(region)
        self.negative = None
        if t.negative is not None and t.negative.any():
            self.negative = torch.from_numpy(np.asarray(t.negative, bool))
        self.hw = (h, w)
        self.target = t
        self.reference: float | None = None  # the CAM's mass before guidance
        # the map is defined where the region's logits can see: its box grown by the halo
        e0, e1, e2, e3 = grow_box(bounding_box(t.region), int(net.halo), (h, w))
        inside = torch.zeros((h, w), dtype=torch.bool)
        inside[e0:e1, e2:e3] = True
        self.inside = inside

    def cam(self, net: torch.nn.Module, layer: str) -> torch.Tensor:
        cam, _ = differentiable_cam(net, self.window, self.target.class_index, self.region, layer)
        return torch.where(self.inside, cam[: self.hw[0], : self.hw[1]], 0.0)


def _measure(
    net: torch.nn.Module, prepared: Sequence[_Prepared], layer: str
) -> list[AttentionMeasures]:
    out = []
    with eval_mode(net):
        for p in prepared:
            with torch.enable_grad():
                cam = p.cam(net, layer).detach()
            if p.reference is None:
                p.reference = float(cam.sum())
            lp, ln, bary = attention_losses(cam, p.target.positive, p.negative, p.reference)
            out.append(
                AttentionMeasures(
                    float(lp) if p.target.positive else float("nan"),
                    float(ln) if p.negative is not None else float("nan"),
                    (float(bary[0]), float(bary[1])),
                    float(cam.sum()) / max(p.reference, 1e-12),
                )
            )
    return out


def measure_attention(
    net: torch.nn.Module, targets: Sequence[GuideTarget], layer: str | None = None
) -> list[AttentionMeasures]:
    """:class:`AttentionMeasures` of each target's Grad-CAM under ``net`` (eval mode).

    Each map is its own reference here, so ``mass`` is 1: a fading map shows only in
    :func:`guide_job`'s report, whose ``after`` is measured against the map before guidance.
    """
    return _measure(net, [_Prepared(net, t) for t in targets], layer or default_layer(net))


def guide_job(
    clf: NetClassifier,
    targets: Sequence[GuideTarget],
    train_images: Sequence[LabeledImage] = (),
    config: SteerConfig | None = None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, tuple[NetClassifier, SteerReport]]:
    """Fine-tune a copy of ``clf`` on the guidance and classification losses; a generator.

    Parameters
    ----------
    clf
        A trained network classifier (not modified).
    targets
        The guided images with their clicks.
    train_images
        The project's labeled images for ``loss_c`` (none: ``loss_c`` is left out).
    config
        Settings (:class:`SteerConfig`).
    cancel
        Stops between steps (the copy is then discarded).

    Returns
    -------
    guided, report
        The fine-tuned copy and a :class:`SteerReport`.

    Raises
    ------
    ExplainError
        No target, an untrained or non-network classifier.
    """
    config = config or SteerConfig()
    if not targets:
        raise ExplainError("nothing to guide: click on at least one image first")
    if not isinstance(clf, NetClassifier):
        raise ExplainError("attention guidance needs a neural network (unet or patch-cnn)")
    if not clf.trained:
        raise ExplainError("train the model before guiding its attention")
    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    guided = copy.deepcopy(clf)
    guided._eval_net = None
    net = guided.net
    layer = config.layer or default_layer(net)
    prepared = [_Prepared(net, t) for t in targets]
    draw = None
    k = len(clf.class_values)
    usable = [im for im in train_images if (im.target >= 0).any()]
    human = [np.asarray(im.extra.get("human", im.target >= 0)) & (im.target >= 0) for im in usable]
    if usable and config.w_c > 0:
        # the model's own augmentation, its band jitter included (TrainConfig.band_jitter)
        draw = PatchBatches(
            usable, k, rng, human, net, config.batch_size, config.patch, True, clf.band_jitter
        )
    before = _measure(net, prepared, layer)  # also fixes each map's reference mass
    lr = config.lr if config.lr is not None else GUIDE_LR.get(clf.kind, 1e-3)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    losses: list[dict[str, float]] = []
    with eval_mode(net):  # BatchNorm statistics stay frozen
        for step in range(config.steps):
            if cancel is not None:
                cancel.raise_if_cancelled()
            pos_total = neg_total = net.out.weight.sum() * 0.0  # type: ignore[union-attr]
            for p in prepared if config.w_g > 0 else ():  # (w_g = 0: a plain fine-tuning)
                with torch.enable_grad():
                    lp, ln, _ = attention_losses(
                        p.cam(net, layer), p.target.positive, p.negative, p.reference
                    )
                pos_total = pos_total + lp
                neg_total = neg_total + ln
            loss_g = (pos_total + neg_total) / len(prepared)
            loss = config.w_g * loss_g
            loss_c = float("nan")
            if draw is not None:
                x, t, w = draw()
                lc = balanced_loss(*draw.logits_and_targets(net, x, t, w), k)
                loss = loss + config.w_c * lc
                loss_c = float(lc.detach())
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(
                {
                    "loss": float(loss.detach()),
                    "loss_pos": float(pos_total.detach()) / len(prepared),
                    "loss_neg": float(neg_total.detach()) / len(prepared),
                    "loss_c": loss_c,
                }
            )
            yield Progress(
                step + 1,
                config.steps,
                f"guiding attention: step {step + 1}/{config.steps}, loss {losses[-1]['loss']:.3f}",
            )
    net.to(memory_format=torch.contiguous_format)
    for prm in net.parameters():
        prm.grad = None
    guided._eval_net = None
    guided.refit_novelty(usable, human, rng)  # the features moved: the gate follows them
    after = _measure(net, prepared, layer)
    report = SteerReport(
        config.steps,
        time.perf_counter() - t0,
        {**config.to_json(), "layer": layer, "lr": lr},
        [t.name for t in targets],
        before,
        after,
        losses,
    )
    return guided, report
