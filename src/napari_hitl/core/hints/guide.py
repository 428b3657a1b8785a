"""Guiding a trained network at test time by back-propagation (Guide Me, §3.2).

The user's hints — clicked or painted pixels with a class, or the pixels a ``find``/``remove``
command stands for (:mod:`napari_hitl.core.hints.commands`) — are a sparse target. Guiding
minimizes its energy over the guiding block's α, β, γ only (eq. 4); the network's weights stay
fixed. Gradient descent with momentum, a few dozen steps: the paper relies on its tendency to
stop in a near local optimum, the smallest change that follows the hints, instead of a
degenerate solution (the whole image as the hinted class).

Energy (mean over hint pixels, each with a weight w):

- a *raise* term (a click "this pixel is c", ``find c``): w · −log p_c  (cross-entropy);
- a *lower* term (``remove c``): w · −log(1 − p_c).

p are the probabilities the user sees (the logits plus the class prior, over the temperature).
Each step runs only the tail of the network on small windows around the hint pixels
(:func:`~napari_hitl.core.hints.block.hint_windows`), so guiding a 512² image takes well
under a second on two cores; the guided prediction of the whole image is one more pass.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_hitl.core.hints.block import GuideError, GuidingBlock, NetSplit, hint_windows
from napari_hitl.core.jsonable import Jsonable
from napari_hitl.core.learning.prediction import Prediction, prediction_from_logits
from napari_hitl.core.progress import CancelToken, Progress

DEFAULT_STEPS = 30
DEFAULT_LR = {"unet": 0.5, "patch-cnn": 0.5}  # measured on siftflow (docs/guide.md)
MAX_HINT_PIXELS = 512  # painted strokes are subsampled to this many pixels


@dataclass
class Hints:
    """Sparse targets of a guide: pixels, a class position for each, and how to use it.

    Attributes
    ----------
    rows, cols
        Pixel coordinates in the guided image.
    classes
        Class *positions* (0 … K−1, the order of the model's classes).
    weights
        Weight of each pixel in the energy.
    lower
        ``True`` where the class must be lowered (``remove``), ``False`` where raised.
    """

    rows: np.ndarray
    cols: np.ndarray
    classes: np.ndarray
    weights: np.ndarray
    lower: np.ndarray

    @classmethod
    def empty(cls) -> Hints:
        """No hints."""
        z = np.zeros(0, np.int64)
        return cls(z, z.copy(), z.copy(), np.zeros(0, np.float32), np.zeros(0, bool))

    @classmethod
    def points(
        cls,
        rows: Any,
        cols: Any,
        classes: Any,
        weight: float = 1.0,
        lower: bool = False,
    ) -> Hints:
        """Hints "pixel (row, col) is (or, with ``lower``, is not) class position c"."""
        r = np.asarray(rows, np.int64).reshape(-1)
        c = np.asarray(cols, np.int64).reshape(-1)
        k = np.broadcast_to(np.asarray(classes, np.int64), r.shape).copy()
        return cls(r, c, k, np.full(r.shape, weight, np.float32), np.full(r.shape, bool(lower)))

    @classmethod
    def from_mask(cls, hint_labels: np.ndarray, class_values: list[int]) -> Hints:
        """Hints from a painted ``H, W`` label image (0 = no hint, else a class *value*).

        Raises
        ------
        GuideError
            A painted value is not one of the model's classes.
        """
        rows, cols = np.nonzero(hint_labels)
        values = hint_labels[rows, cols].astype(np.int64)
        lookup = {v: i for i, v in enumerate(class_values)}
        unknown = sorted(set(np.unique(values).tolist()) - set(lookup))
        if unknown:
            raise GuideError(
                f"hint label value(s) {unknown} are not classes of the model "
                f"(its classes are {class_values})"
            )
        classes = np.array([lookup[int(v)] for v in values], np.int64)
        return cls.points(rows, cols, classes)

    def __len__(self) -> int:
        return int(self.rows.size)

    def __add__(self, other: Hints) -> Hints:
        return Hints(
            np.concatenate([self.rows, other.rows]),
            np.concatenate([self.cols, other.cols]),
            np.concatenate([self.classes, other.classes]),
            np.concatenate([self.weights, other.weights]),
            np.concatenate([self.lower, other.lower]),
        )

    def subsample(self, n: int, seed: int = 0) -> Hints:
        """At most ``n`` of the hints (a seeded random subset, stratified by class)."""
        if len(self) <= n:
            return self
        rng = np.random.default_rng(seed)
        keys = self.classes * 2 + self.lower
        groups = [np.flatnonzero(keys == k) for k in np.unique(keys)]
        per = max(1, n // len(groups))
        pick = np.concatenate([rng.permutation(g)[:per] for g in groups])
        return Hints(
            *(a[pick] for a in (self.rows, self.cols, self.classes, self.weights, self.lower))
        )


@dataclass
class GuideConfig(Jsonable):
    """How the guiding vectors are optimized.

    Attributes
    ----------
    steps
        Gradient steps per guide (a few dozen).
    lr
        Learning rate (``None``: :data:`DEFAULT_LR` of the model).
    momentum
        Momentum of the gradient descent.
    layer
        Where the block sits (``None``: the smallest encoding, see ``guiding_block``).
    knots
        ``(n_α, n_β)``; ``None``: one per feature row / column of the image.
    block_size
        Hint pixels are grouped into windows of this many pixels.
    stop_when_satisfied
        Stop as soon as every full-weight hint is met (its class is the most probable one, or
        with ``remove`` no longer is): the smallest guide that follows the hints.
    """

    steps: int = DEFAULT_STEPS
    lr: float | None = None
    momentum: float = 0.9
    layer: str | None = None
    knots: tuple[int, int] | None = None
    block_size: int = 8
    stop_when_satisfied: bool = True


@dataclass
class GuideReport(Jsonable):
    """What one guide did: the energy before and after, how long, how far the vectors moved."""

    steps: int
    seconds: float
    energy_before: float
    energy_after: float
    hints: int
    vector_size: dict[str, float] = field(default_factory=dict)


def hint_energy(
    logits: torch.Tensor,
    hints: Hints,
    log_prior: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Weighted mean energy of ``P, K`` logits at the hint pixels (see the module docstring)."""
    z = (logits + log_prior[None]) / temperature
    logp = F.log_softmax(z, dim=1)
    cls = torch.from_numpy(hints.classes)
    w = torch.from_numpy(hints.weights)
    lower = torch.from_numpy(hints.lower)
    lp = logp.gather(1, cls[:, None])[:, 0]
    # log(1 - p_c), stable: logsumexp over the other classes minus logsumexp over all
    others = logp.masked_fill(F.one_hot(cls, logp.shape[1]).bool(), float("-inf"))
    l_not = torch.logsumexp(others, dim=1)
    per_pixel = torch.where(lower, -l_not, -lp)
    return (w * per_pixel).sum() / w.sum().clamp_min(1e-12)


def descend(
    opt: torch.optim.Optimizer,
    logits_fn: Callable[[], torch.Tensor],
    hints: Hints,
    log_prior: torch.Tensor,
    temperature: float,
    config: GuideConfig,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, tuple[int, float, float]]:
    """Minimize the hints' energy with ``opt`` for at most ``config.steps`` steps; a generator.

    ``logits_fn`` gives the ``P, K`` logits at the hint pixels under the current parameters.
    With ``config.stop_when_satisfied`` it stops (after at least one step) once every
    full-weight hint is met. Used for the guiding vectors and for the weight fine-tuning
    baseline of the 20-questions evaluation alike.

    Returns
    -------
    steps, energy_before, energy_after
    """
    hard = hints.weights >= 1.0
    before = float("nan")
    for step in range(config.steps):
        if cancel is not None:
            cancel.raise_if_cancelled()
        logits = logits_fn()
        e = hint_energy(logits, hints, log_prior, temperature)
        if step == 0:
            before = float(e.detach())
        elif config.stop_when_satisfied and _satisfied(logits.detach() + log_prior, hints, hard):
            return step, before, float(e.detach())
        opt.zero_grad()
        e.backward()
        opt.step()
        yield Progress(
            step + 1, config.steps, f"guiding: step {step + 1}, energy {float(e.detach()):.3f}"
        )
    with torch.no_grad():
        after = float(hint_energy(logits_fn(), hints, log_prior, temperature))
    return config.steps, before, after


def _satisfied(logits: torch.Tensor, hints: Hints, hard: np.ndarray) -> bool:
    """Every full-weight hint is met: its class is the argmax (``lower``: is not)."""
    if not hard.any():
        return False
    top = logits.argmax(1).numpy()
    hit = top == hints.classes
    return bool(np.where(hints.lower, ~hit, hit)[hard].all())


class ImageGuide:
    """A trained network classifier guided at test time on one normalized image.

    The classifier is never changed: the guide works on an inference copy whose weights do not
    require gradients, and only the block's α, β, γ are optimized.

    Parameters
    ----------
    clf
        A trained :class:`~napari_hitl.core.learning.net.NetClassifier`.
    x
        The normalized ``C, H, W`` image.
    valid
        ``H, W`` pixels with data (others are predicted 0).
    layer, knots
        Where the block goes and how many α, β knots (defaults: see :class:`GuideConfig`).
    """

    def __init__(
        self,
        clf: Any,
        x: np.ndarray,
        valid: np.ndarray | None = None,
        layer: str | None = None,
        knots: tuple[int, int] | None = None,
    ) -> None:
        if not hasattr(clf, "net") or not getattr(clf, "trained", False):
            raise GuideError(
                "test-time guiding needs a trained network model (unet or patch-cnn); "
                "the random forest has no feature map to guide"
            )
        if x.ndim != 3:
            raise GuideError(f"expected a C, H, W image, got shape {x.shape}")
        self.clf = clf
        net = copy.deepcopy(clf._inference_net())
        net.requires_grad_(False)
        self.split = NetSplit(net, layer)
        self.x = np.ascontiguousarray(x, np.float32)
        self.valid = valid
        self.shape = (int(x.shape[1]), int(x.shape[2]))
        self.knots = knots
        self.block = self.split.block(self.shape, knots)
        self.hints = Hints.empty()
        self._log_prior = torch.from_numpy(np.asarray(clf.class_log_prior, np.float32))
        self._temperature = float(clf.temperature)

    @property
    def n_classes(self) -> int:
        """Number of classes of the model."""
        return len(self.clf.class_values)

    def reset(self) -> None:
        """Drop the guide (back to the identity) and every hint."""
        self.block = self.split.block(self.shape, self.knots)
        self.hints = Hints.empty()

    def _check(self, hints: Hints) -> None:
        h, w = self.shape
        if len(hints) == 0:
            raise GuideError("no hints: click or paint a pixel with a class, or type a command")
        if (
            (hints.rows < 0).any()
            or (hints.rows >= h).any()
            or (hints.cols < 0).any()
            or (hints.cols >= w).any()
        ):
            raise GuideError(f"a hint lies outside the {h}×{w} image")
        if (hints.classes < 0).any() or (hints.classes >= self.n_classes).any():
            raise GuideError(f"a hint's class is not one of the model's {self.n_classes}")

    def energy(self, hints: Hints) -> float:
        """The energy of ``hints`` under the current guide."""
        self._check(hints)
        win = hint_windows(self.split, self.x, np.stack([hints.rows, hints.cols], 1))
        with torch.no_grad():
            return float(
                hint_energy(
                    win.logits(self.split, self.block), hints, self._log_prior, self._temperature
                )
            )

    def fit_job(
        self,
        hints: Hints,
        config: GuideConfig | None = None,
        cancel: CancelToken | None = None,
        *,
        add: bool = True,
    ) -> Generator[Progress, None, GuideReport]:
        """Optimize α, β, γ for ``hints`` (plus the earlier ones when ``add``); a generator.

        The guide continues from its current vectors, so questions can be answered one at a
        time. Only the block's vectors change.
        """
        config = config or GuideConfig()
        t0 = time.perf_counter()
        hints = (self.hints + hints) if add else hints
        self._check(hints)
        self.hints = hints
        use = hints.subsample(MAX_HINT_PIXELS)
        win = hint_windows(self.split, self.x, np.stack([use.rows, use.cols], 1), config.block_size)
        lr = config.lr if config.lr is not None else DEFAULT_LR[self.split.kind]
        opt = torch.optim.SGD(self.block.parameters(), lr=lr, momentum=config.momentum)
        steps, before, after = yield from descend(
            opt, lambda: win.logits(self.split, self.block), use, self._log_prior,
            self._temperature, config, cancel,
        )  # fmt: skip
        return GuideReport(
            steps, time.perf_counter() - t0, before, after, len(hints), self.block.size()
        )

    def predict_job(
        self, tile: int | None = 1024, cancel: CancelToken | None = None, guided: bool = True
    ) -> Generator[Progress, None, Prediction]:
        """The (guided, or with ``guided=False`` the plain) prediction of the whole image."""
        block: GuidingBlock | None = self.block if guided else None
        logits = yield from self.split.logits_job(
            self.x,
            block,
            tile,
            cancel,
            prior=self.clf.class_log_prior,
            gate=getattr(self.clf, "novelty", None),
        )
        return prediction_from_logits(
            logits, self.clf.class_values, self.clf.temperature, self.valid
        )
