"""Training data from sparse labels: normalization, class indexing, balanced patch sampling.

Label maps use the project's class values (0 = unlabeled); models use class indices 0..K-1.
A :class:`LabeledImage` holds one image's normalized bands, target indices (-1 = no label) and
per-pixel weights (human 1, machine < 1), and :class:`BalancedSampler` draws patch centres with an
equal class distribution (the paper's rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_hitl.core.errors import HitlError
from napari_hitl.core.io.bands import robust_stats, subsample_for_stats
from napari_hitl.core.jsonable import Jsonable
from napari_hitl.core.store import PROVENANCE_HUMAN


class TrainingDataError(HitlError, ValueError):
    """The labels cannot train a model (no labels, one class, values without a class...)."""


class IncompatibleBandsError(HitlError, ValueError):
    """A model is applied to data whose bands differ from the ones it was trained on."""


class StackIndexError(HitlError, ValueError):
    """A slice index does not fit the image: a 2-D image has none, a stack needs one in range."""


ROW_POSITION_CHANNEL = "row position"
"""Name of the input channel :attr:`Normalization.row_position` adds (attributions show it)."""


@dataclass
class Normalization(Jsonable):
    """Per-band affine normalization ``(x - low) / (high - low)`` and the band names it is for.

    With ``row_position`` the model's input gains one channel after the bands: each pixel's
    height in its image, 0 at the top row and 1 at the bottom (``TrainConfig.row_position``) —
    a location cue for photos, whose sky is up and whose road is down.
    """

    band_names: list[str]
    low: list[float]
    high: list[float]
    row_position: bool = False

    @property
    def channel_names(self) -> list[str]:
        """What each channel of :meth:`apply`'s output holds: the bands, then the cue."""
        return [*self.band_names, *([ROW_POSITION_CHANNEL] if self.row_position else [])]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Normalization:
        """Inverse of ``to_json`` (its fields; a model saved before the cue existed has none)."""
        return cls(
            list(data["band_names"]),
            [float(v) for v in data["low"]],
            [float(v) for v in data["high"]],
            bool(data.get("row_position", False)),
        )

    def check(self, band_names: Sequence[str], what: str = "the image") -> None:
        """Raise :class:`IncompatibleBandsError` unless ``band_names`` are the trained bands."""
        if list(band_names) != self.band_names:
            raise IncompatibleBandsError(
                f"the model was trained on bands {self.band_names}, but {what} has "
                f"{list(band_names)}; import the image with the same bands (--bands) or train "
                "a new model"
            )

    def band_indices(self, band_names: Sequence[str], what: str = "the image") -> list[int]:
        """Where the trained bands are in ``band_names`` (the model's order; extra bands ignored).

        Parameters
        ----------
        band_names
            The bands of an image, in its order.
        what
            How the image is named in the error message.

        Returns
        -------
        list[int]
            For each of :attr:`band_names`, its index in ``band_names``.

        Raises
        ------
        IncompatibleBandsError
            A trained band is missing (the message names it).
        """
        names = list(band_names)
        missing = [b for b in self.band_names if b not in names]
        if missing:
            raise IncompatibleBandsError(
                f"the model was trained on bands {self.band_names}, but {what} has no band "
                f"{', '.join(repr(b) for b in missing)} (its bands: {names}); import the image "
                "with those bands (--bands) or train a model on bands it has (train --bands)"
            )
        return [names.index(b) for b in self.band_names]

    def apply(
        self,
        bands: np.ndarray,
        valid: np.ndarray | None = None,
        rows: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """The model's input: a normalized float32 copy of ``bands`` (NaN/inf and invalid
        pixels 0, values clipped to ±10), and with :attr:`row_position` the cue after them.

        Parameters
        ----------
        bands
            ``C, ..., H, W`` values of :attr:`band_names`.
        valid
            ``..., H, W`` mask of the pixels to keep (the others become 0 in every band).
        rows
            ``(first_row, image_height)``: where ``bands`` lie in their image when they are a
            window of it (``None``: the whole image). Only the row-position cue reads it.
        """
        low = np.asarray(self.low, np.float32).reshape(-1, *([1] * (bands.ndim - 1)))
        high = np.asarray(self.high, np.float32).reshape(low.shape)
        out = (np.asarray(bands, np.float32) - low) / (high - low)
        np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        np.clip(out, -10, 10, out=out)
        if valid is not None:
            out[:, ~valid] = 0.0
        if self.row_position:
            out = np.concatenate([out, row_position(out.shape[1:], rows)[None]])
        return out


def row_position(shape: tuple[int, ...], rows: tuple[int, int] | None = None) -> np.ndarray:
    """Each pixel's height in its image, ``(row + 0.5) / image_height`` (0 top, 1 bottom), for an
    array of ``shape`` (``..., H, W``) whose first row is row ``rows[0]`` of an image
    ``rows[1]`` rows high (``None``: the array is the whole image)."""
    h = shape[-2]
    first, height = rows if rows is not None else (0, h)
    y = (np.arange(first, first + h, dtype=np.float32) + 0.5) / np.float32(max(height, 1))
    return np.ascontiguousarray(np.broadcast_to(y[:, None], shape))


def normalization_from_stats(band_names: Sequence[str], stats: Sequence[Sequence]) -> Normalization:
    """Project normalization: per band, the median over images of their 1st and 99th percentiles.

    ``stats[i]`` lists image i's :class:`~napari_hitl.core.io.bands.BandStats` per band.
    """
    lows, highs = [], []
    for b in range(len(band_names)):
        p1 = [s[b].p1 for s in stats if s[b] is not None and np.isfinite(s[b].p1)]
        p99 = [s[b].p99 for s in stats if s[b] is not None and np.isfinite(s[b].p99)]
        lo = float(np.median(p1)) if p1 else 0.0
        hi = float(np.median(p99)) if p99 else 1.0
        if not hi > lo:
            hi = lo + 1.0
        lows.append(lo)
        highs.append(hi)
    return Normalization(list(band_names), lows, highs)


def normalization_from_bands(images: Sequence[np.ndarray]) -> Normalization:
    """:func:`normalization_from_stats` of in-memory ``C, H, W`` images (the same bands each,
    named ``band_0``, ``band_1``, …): each band's robust statistics on a subsample, per image.
    """
    names = [f"band_{i}" for i in range(images[0].shape[0])]
    stats = [[robust_stats(b) for b in x[subsample_for_stats(x.shape)]] for x in images]
    return normalization_from_stats(names, stats)


@dataclass
class LabeledImage:
    """One image ready for training."""

    name: str
    x: np.ndarray  # C, H, W float32, normalized
    target: np.ndarray  # H, W int64 class index, -1 = unlabeled or invalid
    weight: np.ndarray  # H, W float32, 0 where unlabeled
    extra: dict = field(default_factory=dict)


def human_mask(image: LabeledImage) -> np.ndarray:
    """Where ``image``'s labels are the person's: its ``extra["human"]`` mask, or (an image made
    without one) where a label weighs 1 — machine labels weigh less."""
    return np.asarray(image.extra.get("human", image.weight >= 1.0), bool)


def class_index(labels: np.ndarray, class_values: Sequence[int]) -> np.ndarray:
    """Map label values to indices 0..K-1 (-1 for 0 = unlabeled).

    Raises
    ------
    TrainingDataError
        A label value is not one of ``class_values``.
    """
    lut_size = max(int(labels.max(initial=0)), max(class_values, default=0)) + 1
    lut = np.full(lut_size, -2, np.int64)
    lut[0] = -1
    for i, v in enumerate(class_values):
        lut[v] = i
    idx = lut[labels.astype(np.int64)]
    if (idx == -2).any():
        bad = sorted(set(np.unique(labels[idx == -2]).tolist()))
        raise TrainingDataError(
            f"label values {bad[:10]} are not classes of the project ({list(class_values)})"
        )
    return idx


def make_labeled_image(
    name: str,
    x: np.ndarray,
    labels: np.ndarray,
    provenance: np.ndarray,
    class_values: Sequence[int],
    machine_weight: float,
    valid: np.ndarray | None = None,
) -> LabeledImage:
    """Targets and weights of one image: human pixels weigh 1, machine ``machine_weight``."""
    target = class_index(labels, class_values)
    weight = np.where(provenance == PROVENANCE_HUMAN, 1.0, machine_weight).astype(np.float32)
    if valid is not None:
        target[~valid] = -1
    weight[target < 0] = 0.0
    return LabeledImage(name, x, target, weight, {"human": (provenance == PROVENANCE_HUMAN)})


def check_trainable(images: Sequence[LabeledImage], class_names: Sequence[str]) -> np.ndarray:
    """Pixels per class over all images; raises a clear error if training is impossible."""
    k = len(class_names)
    counts = np.zeros(k, np.int64)
    for im in images:
        t = im.target[im.target >= 0]
        counts += np.bincount(t, minlength=k)[:k]
    if counts.sum() == 0:
        raise TrainingDataError("there are no labels yet: paint a few pixels of each class first")
    present = [class_names[i] for i in range(k) if counts[i] > 0]
    if len(present) < 2:
        raise TrainingDataError(
            f"only one class is labeled ({present[0]}); training needs at least two classes"
        )
    return counts


def image_draw(ids: np.ndarray, power: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How :class:`BalancedSampler` draws an image for one class's pixels.

    Parameters
    ----------
    ids
        Each pixel's image index, in image order (each image's pixels one block).
    power
        An image with n of the pixels is drawn with probability ∝ n ** ``power``.

    Returns
    -------
    starts, counts, cumulative : np.ndarray
        Each image's first index into ``ids``, its pixel count and the cumulative
        probabilities of drawing it.
    """
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    counts = np.diff(np.r_[starts, ids.size])
    weights = counts.astype(np.float64) ** power
    return starts, counts, np.cumsum(weights / weights.sum())


class BalancedSampler:
    """Draws labeled pixels with an equal class distribution, spread over the images.

    Each draw picks a class uniformly among the labeled ones, then an image among those that
    hold it, with probability ∝ n ** ``image_power`` for its n pixels of the class
    (``TrainConfig.image_power``; 0, the default there, draws every image alike), then one of
    those pixels uniformly. ``image_power`` 1 is a pixel drawn uniformly over every image, by
    the same random calls as the sampler before 2026-12-06 (no image is drawn first), so its
    runs reproduce. When ``human`` masks are given, half of every
    batch is drawn from the human-labeled pixels alone (``human_share``), so that the
    person's labels stay in every batch however many machine labels have been accepted.
    """

    human_share = 0.5  # three quarters measured no better (docs/learning-log.md, tenth session)

    def __init__(
        self,
        images: Sequence[LabeledImage],
        n_classes: int,
        rng: np.random.Generator,
        human: Sequence[np.ndarray] | None = None,
        image_power: float = 1.0,
    ):
        self.rng = rng
        self.widths = [im.target.shape[-1] for im in images]
        self.pools = [self._index(images, n_classes, None)]
        if human is not None:
            human_pool = self._index(images, n_classes, human)
            if human_pool:
                self.pools.insert(0, human_pool)
        self.image_power = float(image_power)
        # per pool and class: each image's first index into the class's pixels, its count,
        # and the cumulative probabilities of drawing it (power 1 draws no image)
        self.by_image = [
            [image_draw(ids, self.image_power) for ids, _ in pool] if image_power != 1 else []
            for pool in self.pools
        ]

    @staticmethod
    def _index(images, n_classes, masks) -> list[tuple[np.ndarray, np.ndarray]]:
        by_class = []
        for c in range(n_classes):
            img_ids, flat = [], []
            for i, im in enumerate(images):
                sel = im.target == c
                if masks is not None:
                    sel &= masks[i]
                f = np.flatnonzero(sel.ravel())
                img_ids.append(np.full(f.size, i, np.int32))
                flat.append(f)
            ids = np.concatenate(img_ids) if img_ids else np.zeros(0, np.int32)
            if ids.size:
                by_class.append((ids, np.concatenate(flat)))
        return by_class

    def draw(self, n: int) -> list[tuple[int, int, int]]:
        """``n`` (image index, row, col) centres (the first ``human_share`` of them
        human-labeled when possible)."""
        out = []
        for j in range(n):
            human = j < int(self.human_share * n) or len(self.pools) == 1
            p = 0 if human else len(self.pools) - 1
            c = int(self.rng.integers(0, len(self.pools[p])))
            ids, flat = self.pools[p][c]
            if self.image_power == 1.0:  # every labeled pixel alike: no image drawn first
                k = int(self.rng.integers(0, ids.size))
            else:
                starts, counts, cumulative = self.by_image[p][c]
                if self.image_power == 0.0:  # every image alike
                    m = int(self.rng.integers(0, starts.size))
                else:
                    m = min(int(np.searchsorted(cumulative, self.rng.random())), starts.size - 1)
                k = int(starts[m] + self.rng.integers(0, counts[m]))
            i = int(ids[k])
            r, col = divmod(int(flat[k]), self.widths[i])
            out.append((i, r, col))
        return out


def class_log_prior(counts: np.ndarray, smoothing: float = 1.0) -> np.ndarray:
    """log of the labeled class frequencies (add-one smoothed), centred to mean 0.

    Adding it to the logits of a class-balanced model turns its uniform-prior posterior into the
    posterior under the project's class frequencies (Bayes' rule). Without it a model trained on
    equal numbers of each class over-predicts rare classes — on real data sets with a dominant
    class it accepted mostly wrong pixels.
    """
    p = (np.asarray(counts, np.float64) + smoothing) / (np.sum(counts) + smoothing * len(counts))
    logp = np.log(p)
    return (logp - logp.mean()).astype(np.float32)


def human_class_counts(
    images: Sequence[LabeledImage], human: Sequence[np.ndarray], k: int
) -> np.ndarray:
    """Pixels per class among the human labels (the prior must not learn from the model's own
    accepted predictions: that feedback loop drifts towards the easy majority class)."""
    counts = np.zeros(k)
    for im, h in zip(images, human, strict=True):
        t = im.target[(im.target >= 0) & h]
        counts += np.bincount(t, minlength=k)[:k]
    return counts
