"""Active learning on arrays: which image, tile or pixel the human should label next.

Everything here works on prediction arrays (probabilities, confidence μ = max p, margin
p1 − p2, entropy) and label masks; :mod:`napari_hitl.core.active.review_queue` applies it to a
project store and :mod:`napari_hitl.core.evaluation.simulate` to the simulated user.

Local consistency (HISE, eq. 2)
    τ_l = mean of μ over the pixels *predicted as an object* whose μ < β. A low τ_l means the
    model's object boundaries are unreliable: the item goes to the human. A high τ_l means the
    machine may annotate it with pseudo-labels above δ.

    "Object" for multi-class data: every pixel whose predicted class is not a *background*
    class. The background classes are the ones the user names (``background=``); the store
    default is every class called "background" (any case). With no background class (land
    cover, where every class is an object) τ_l averages μ over every uncertain pixel.
    Pixels that are already labeled or invalid never count. An item with no uncertain object
    pixel has τ_l = 1: nothing in it is in doubt.

Progressive schedule (HISE eq. 6–7)
    β_t = β0 − Δβ·t and γ_t = γ0 + Δγ·t (γ = the share of items the machine annotates),
    clipped to ``[beta_min, 1]`` and ``[0, gamma_max]``; :class:`Schedule`.

Strategies (:data:`STRATEGIES`), each giving a *priority* (higher = ask the human first)
    ``hise``    −τ_l (low local consistency first)
    ``entropy`` mean entropy of the unlabeled pixels
    ``margin``  mean 1 − (p1 − p2) of the unlabeled pixels
    ``kcenter`` k-center greedy (core-set) on pooled features: the order in which the greedy
                picks items farthest from everything labeled so far
    ``gmm``     the attention-guiding paper, §3.5: a 2-component diagonal Gaussian mixture (EM,
                100 iterations)
                fitted to the items' confidence maps (8×8 block means); the log-likelihood of
                each item, highest first (the most typical items)
    ``random``  a seeded permutation
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_hitl.core.choices import DEFAULT_THRESHOLD, STRATEGIES
from napari_hitl.core.jsonable import Jsonable
from napari_hitl.core.learning.prediction import Prediction
from napari_hitl.core.tiling import Box

GMM_GRID = 8  # the confidence map of an item is reduced to GMM_GRID × GMM_GRID block means


class ActiveLearningError(ValueError):
    """A bad setting of an active-learning function (the message says which and why)."""


# ----------------------------------------------------------------------------- schedule
@dataclass(frozen=True)
class Schedule(Jsonable):
    """HISE's progressive thresholds.

    Parameters
    ----------
    beta0, dbeta
        β_t = β0 − Δβ·t: confidence below β makes an object pixel uncertain (eq. 6).
    gamma0, dgamma
        γ_t = γ0 + Δγ·t: the share of ranked items the machine annotates (eq. 7).
    delta
        The pseudo-label threshold δ (eq. 4): the machine labels pixels with μ > δ.
    beta_min, gamma_max
        Bounds that keep β_t and γ_t meaningful over long runs.
    """

    beta0: float = 0.9
    dbeta: float = 0.02
    gamma0: float = 0.3
    dgamma: float = 0.1
    delta: float = DEFAULT_THRESHOLD
    beta_min: float = 0.5
    gamma_max: float = 0.9

    def __post_init__(self) -> None:
        for key in ("beta0", "gamma0", "delta", "beta_min", "gamma_max"):
            v = getattr(self, key)
            if not 0.0 <= v <= 1.0:
                raise ActiveLearningError(f"{key} must be in [0, 1], got {v}")
        if self.beta_min > self.beta0:
            raise ActiveLearningError(f"beta_min {self.beta_min} is above beta0 {self.beta0}")

    def beta(self, t: int) -> float:
        """β_t (t = 0 is the first iteration)."""
        return float(min(1.0, max(self.beta_min, self.beta0 - self.dbeta * max(t, 0))))

    def gamma(self, t: int) -> float:
        """γ_t, the machine's share of the ranked items."""
        return float(min(self.gamma_max, max(0.0, self.gamma0 + self.dgamma * max(t, 0))))


def split_routes(n_items: int, gamma: float) -> tuple[int, int]:
    """``(n_human, n_machine)``: the easiest ``round(γ·n)`` items go to the machine."""
    n_machine = round(min(max(gamma, 0.0), 1.0) * n_items)
    return n_items - n_machine, n_machine


# ------------------------------------------------------------------------- item scores
def local_consistency(
    confidence: np.ndarray,
    predicted: np.ndarray,
    beta: float,
    background: Iterable[int] = (),
    mask: np.ndarray | None = None,
) -> float:
    """HISE's τ_l: the mean confidence of the object pixels whose confidence is below ``beta``.

    Parameters
    ----------
    confidence
        μ = max p per pixel.
    predicted
        The predicted class per pixel (0 = no prediction, never an object).
    beta
        The uncertainty threshold β.
    background
        Class values that are not objects.
    mask
        Pixels that may count (e.g. valid and not yet labeled); default all.

    Returns
    -------
    float
        τ_l in [0, β); 1.0 when no object pixel is below β.
    """
    conf = np.asarray(confidence, np.float64)
    pred = np.asarray(predicted)
    if conf.shape != pred.shape:
        raise ActiveLearningError(f"confidence {conf.shape} and prediction {pred.shape} differ")
    obj = pred > 0
    bg = [int(b) for b in background]
    if bg:
        obj &= ~np.isin(pred, bg)
    if mask is not None:
        obj &= np.asarray(mask, bool)
    sel = obj & (conf < beta)
    n = int(sel.sum())
    return float(conf[sel].sum() / n) if n else 1.0


@dataclass
class ItemStats:
    """The numbers a strategy ranks one item (image, slice or tile) by.

    ``pixels`` counts the pixels that may be asked (valid, not labeled by anyone);
    ``uncertain_fraction`` is the share of those that are uncertain object pixels (μ < β).
    """

    tau_l: float
    uncertain_fraction: float
    mean_confidence: float
    mean_entropy: float
    mean_margin_gap: float
    pixels: int
    labeled_fraction: float
    human_fraction: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def item_stats(
    confidence: np.ndarray,
    predicted: np.ndarray,
    margin: np.ndarray,
    entropy: np.ndarray,
    beta: float,
    background: Iterable[int] = (),
    labeled: np.ndarray | None = None,
    human: np.ndarray | None = None,
    valid: np.ndarray | None = None,
) -> ItemStats:
    """The :class:`ItemStats` of one item from its prediction arrays and label masks.

    ``labeled`` marks pixels with any label (human or machine), ``human`` those a person made;
    only valid unlabeled pixels enter the uncertainty means and τ_l.
    """
    shape = np.shape(confidence)
    valid_m = np.ones(shape, bool) if valid is None else np.asarray(valid, bool)
    labeled_m = np.zeros(shape, bool) if labeled is None else np.asarray(labeled, bool)
    human_m = np.zeros(shape, bool) if human is None else np.asarray(human, bool)
    open_ = valid_m & ~labeled_m
    n_valid = max(int(valid_m.sum()), 1)
    n = int(open_.sum())
    bg = list(background)
    tau = local_consistency(confidence, predicted, beta, bg, open_)
    if n:
        conf = np.asarray(confidence)[open_]
        pred = np.asarray(predicted)[open_]
        obj = (pred > 0) & ~np.isin(pred, bg) if bg else pred > 0
        uncertain = float((obj & (conf < beta)).sum() / n)
        stats = (
            float(conf.mean()),
            float(np.asarray(entropy)[open_].mean()),
            float(1.0 - np.asarray(margin)[open_].mean()),
        )
    else:
        uncertain, stats = 0.0, (1.0, 0.0, 0.0)
    return ItemStats(
        tau_l=tau,
        uncertain_fraction=uncertain,
        mean_confidence=stats[0],
        mean_entropy=stats[1],
        mean_margin_gap=stats[2],
        pixels=n,
        labeled_fraction=float((labeled_m & valid_m).sum() / n_valid),
        human_fraction=float((human_m & valid_m).sum() / n_valid),
    )


def confidence_signature(confidence: np.ndarray, grid: int = GMM_GRID) -> np.ndarray:
    """The ``grid × grid`` block means of a confidence map (any size), flattened: the
    fixed-length "attention map" vector the GMM strategy fits."""
    conf = np.asarray(confidence, np.float64)
    h, w = conf.shape
    rows = np.array_split(np.arange(h), min(grid, h))
    cols = np.array_split(np.arange(w), min(grid, w))
    out = np.array([[conf[np.ix_(r, c)].mean() for c in cols] for r in rows])
    if out.shape != (grid, grid):  # tiny items: stretch to the grid
        idx_r = np.linspace(0, out.shape[0] - 1, grid).round().astype(int)
        idx_c = np.linspace(0, out.shape[1] - 1, grid).round().astype(int)
        out = out[np.ix_(idx_r, idx_c)]
    return out.ravel()


def pooled_features(probabilities: np.ndarray, bands: np.ndarray | None = None) -> np.ndarray:
    """A descriptor of an item for k-center diversity: mean and spread of the class
    probabilities, and of the (normalized) bands when given."""
    p = np.asarray(probabilities, np.float64).reshape(probabilities.shape[0], -1)
    parts = [p.mean(1), p.std(1)]
    if bands is not None:
        b = np.asarray(bands, np.float64).reshape(bands.shape[0], -1)
        b = np.where(np.isfinite(b), b, 0.0)
        parts += [b.mean(1), b.std(1)]
    return np.concatenate(parts)


def gmm_log_likelihood(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """Seed 004 eq. 1–2: fit a 2-component diagonal GMM by EM (100 iterations) to ``vectors``
    (``N, D``) and return each row's log-likelihood ln g_θ(x)."""
    from sklearn.mixture import GaussianMixture

    x = np.asarray(vectors, np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ActiveLearningError(f"need an N × D array of vectors, got shape {x.shape}")
    if x.shape[0] < 2:
        return np.zeros(x.shape[0])
    gmm = GaussianMixture(
        n_components=2, covariance_type="diag", max_iter=100, reg_covar=1e-4, random_state=seed
    )
    gmm.fit(x)
    return gmm.score_samples(x)


def kcenter_greedy(
    features: np.ndarray, covered: np.ndarray | None = None, n: int | None = None
) -> tuple[list[int], list[float]]:
    """k-center greedy (core-set): repeatedly pick the item farthest from every chosen or
    ``covered`` (already labeled) item.

    Returns
    -------
    order, distances
        The picked row indices in order (``n`` of them, default every uncovered row) and each
        one's distance to the nearest centre when it was picked.
    """
    f = np.asarray(features, np.float64)
    if f.ndim != 2:
        raise ActiveLearningError(f"features must be N × D, got shape {f.shape}")
    m = f.shape[0]
    cov = np.zeros(m, bool) if covered is None else np.asarray(covered, bool).copy()
    # scale every feature to unit spread so no feature dominates by its units
    scale = f.std(0)
    f = f / np.where(scale > 0, scale, 1.0)
    if cov.any():
        dist = np.min(np.linalg.norm(f[:, None, :] - f[None, cov, :], axis=2), axis=1)
    else:  # nothing labeled yet: start from the item nearest the mean (the most typical)
        dist = np.full(m, np.inf)
    n = int((~cov).sum()) if n is None else min(int(n), int((~cov).sum()))
    order: list[int] = []
    dists: list[float] = []
    for _ in range(n):
        if np.isinf(dist[~cov]).all():  # no centre yet: the item nearest the mean
            i = int(np.argmin(np.where(cov, np.inf, np.linalg.norm(f - f.mean(0), axis=1))))
        else:
            i = int(np.argmax(np.where(cov, -1.0, dist)))
        order.append(i)
        dists.append(float(dist[i]))
        cov[i] = True
        dist = np.minimum(dist, np.linalg.norm(f - f[i], axis=1))
    return order, dists


def priorities(
    strategy: str,
    stats: Sequence[ItemStats],
    *,
    confidences: Sequence[np.ndarray] | None = None,
    features: np.ndarray | None = None,
    covered: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Each item's priority under ``strategy`` (higher = the human should label it first).

    Parameters
    ----------
    strategy
        One of :data:`STRATEGIES`.
    stats
        One :class:`ItemStats` per item.
    confidences
        Per item confidence maps (``gmm``).
    features
        ``N, D`` pooled features (``kcenter``).
    covered
        Items already labeled by the human (``kcenter`` measures distance from them).
    seed
        For ``random`` and the GMM's initialisation.
    """
    n = len(stats)
    if strategy not in STRATEGIES:
        raise ActiveLearningError(f"unknown strategy {strategy!r}; choose from {STRATEGIES}")
    if n == 0:
        return np.zeros(0)
    if strategy == "hise":
        return -np.array([s.tau_l for s in stats])
    if strategy == "entropy":
        return np.array([s.mean_entropy for s in stats])
    if strategy == "margin":
        return np.array([s.mean_margin_gap for s in stats])
    if strategy == "random":
        return np.random.default_rng(seed).random(n)
    if strategy == "gmm":
        if confidences is None or len(confidences) != n:
            raise ActiveLearningError("the gmm strategy needs one confidence map per item")
        return gmm_log_likelihood(np.stack([confidence_signature(c) for c in confidences]), seed)
    # kcenter: priority falls with the pick order; covered items come last
    if features is None or len(features) != n:
        raise ActiveLearningError("the kcenter strategy needs one feature vector per item")
    order, _ = kcenter_greedy(features, covered)
    out = np.full(n, -float(n))
    out[order] = -np.arange(len(order), dtype=float)
    return out


def rank_order(priority: np.ndarray) -> np.ndarray:
    """Item indices, highest priority first (ties keep the item order)."""
    return np.argsort(-np.asarray(priority, np.float64), kind="stable")


@dataclass
class ScoredTile:
    """One tile of a plane with what every strategy needs: its stats, its confidence map
    (``gmm``) and its pooled features (``kcenter``)."""

    box: Box
    stats: ItemStats
    confidence: np.ndarray
    features: np.ndarray


def score_tiles(
    pred: Prediction,
    beta: float,
    background: Iterable[int] = (),
    labels: np.ndarray | None = None,
    human: np.ndarray | None = None,
    valid: np.ndarray | None = None,
    tile: int | None = None,
) -> list[ScoredTile]:
    """Split a plane's prediction into tiles (:func:`tile_boxes`) and score each one.

    ``labels`` (any label, 0 = none), ``human`` and ``valid`` are masks of the whole plane.
    """
    bg = list(background)
    out = []
    for box in tile_boxes(pred.labels.shape, tile):
        sl = (slice(box[0], box[1]), slice(box[2], box[3]))
        part = pred.crop(*sl)
        stats = item_stats(
            part.confidence,
            part.labels,
            part.margin,
            part.entropy,
            beta,
            bg,
            labeled=None if labels is None else np.asarray(labels)[sl] > 0,
            human=None if human is None else np.asarray(human)[sl],
            valid=None if valid is None else np.asarray(valid)[sl],
        )
        out.append(ScoredTile(box, stats, part.confidence, pooled_features(part.probabilities)))
    return out


def item_key(name: str, box: Box) -> str:
    """The key of an item: ``"NAME@row0:row1,col0:col1"``."""
    return f"{name}@{box[0]}:{box[1]},{box[2]}:{box[3]}"


# ------------------------------------------------------------------------------ tiles
def tile_boxes(shape: tuple[int, int], tile: int | None) -> list[Box]:
    """Boxes ``(row0, row1, col0, col1)`` covering ``shape`` in tiles of ``tile`` px (the last
    row/column of tiles is smaller); one box for the whole image when ``tile`` is None."""
    h, w = int(shape[0]), int(shape[1])
    if tile is None or tile <= 0 or (tile >= h and tile >= w):
        return [(0, h, 0, w)]
    return [
        (r, min(r + tile, h), c, min(c + tile, w))
        for r in range(0, h, tile)
        for c in range(0, w, tile)
    ]


def coverage_grid(labeled: np.ndarray, tile: int, valid: np.ndarray | None = None) -> np.ndarray:
    """The labeled share of each ``tile × tile`` block (``ceil(H/t), ceil(W/t)``, float32);
    invalid pixels do not count."""
    lab = np.asarray(labeled, bool)
    val = np.ones(lab.shape, bool) if valid is None else np.asarray(valid, bool)
    h, w = lab.shape
    gh, gw = math.ceil(h / tile), math.ceil(w / tile)
    pad = ((0, gh * tile - h), (0, gw * tile - w))
    num = np.pad(lab & val, pad).reshape(gh, tile, gw, tile).sum((1, 3))
    den = np.pad(val, pad).reshape(gh, tile, gw, tile).sum((1, 3))
    return (num / np.maximum(den, 1)).astype(np.float32)


# -------------------------------------------------------------------------- questions
@dataclass(frozen=True)
class Question:
    """A pixel the model asks the human about: the two classes it hesitates between."""

    row: int
    col: int
    margin: float
    first: int
    second: int


def ask_pixels(
    margin: np.ndarray,
    allowed: np.ndarray | None = None,
    n: int = 1,
    min_distance: float = 16.0,
    probabilities: np.ndarray | None = None,
    class_values: Sequence[int] | None = None,
    pool: int = 20000,
) -> list[Question]:
    """The "20 questions" (Guide Me, §4.1): the allowed pixels with the smallest margin
    p1 − p2, spread out so that no two are closer than ``min_distance`` px.

    Parameters
    ----------
    margin
        ``H, W`` p1 − p2 per pixel.
    allowed
        Pixels that may be asked (valid and unlabeled); default all.
    n
        How many questions.
    min_distance
        Minimum Euclidean distance between two questions (0: the n smallest margins).
    probabilities, class_values
        When given, each question names the two classes the model hesitates between.
    pool
        The candidates considered: the ``pool`` smallest margins.

    Returns
    -------
    list of Question
        Smallest margin first; fewer than ``n`` when too few pixels are allowed.
    """
    m = np.asarray(margin, np.float64)
    ok = np.ones(m.shape, bool) if allowed is None else np.asarray(allowed, bool)
    flat = np.flatnonzero(ok.ravel())
    if flat.size == 0 or n <= 0:
        return []
    vals = m.ravel()[flat]
    k = min(pool, flat.size)
    cand = np.argpartition(vals, k - 1)[:k] if k < flat.size else np.arange(flat.size)
    cand = cand[np.argsort(vals[cand], kind="stable")]
    rows, cols = np.divmod(flat[cand], m.shape[1])
    chosen: list[int] = []
    d2 = float(min_distance) ** 2
    for j in range(cand.size):
        if len(chosen) == n:
            break
        if d2 > 0 and chosen:
            dr = rows[chosen] - rows[j]
            dc = cols[chosen] - cols[j]
            if np.min(dr * dr + dc * dc) < d2:
                continue
        chosen.append(j)
    out = []
    for j in chosen:
        r, c = int(rows[j]), int(cols[j])
        first = second = 0
        if probabilities is not None and class_values is not None:
            top = np.argsort(-np.asarray(probabilities)[:, r, c])[:2]
            first = int(class_values[top[0]])
            second = int(class_values[top[1]]) if top.size > 1 else first
        out.append(Question(r, c, float(m[r, c]), first, second))
    return out


# --------------------------------------------------------------------------- suspects
@dataclass
class Suspect:
    """A patch of human labels that the model contradicts with high confidence.

    ``box`` is ``(row0, row1, col0, col1)``; ``centre`` the patch's centroid (row, col).
    """

    label: int
    predicted: int
    pixels: int
    confidence: float
    centre: tuple[float, float]
    box: Box
    image: str = ""
    index: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        d = asdict(self)
        d["centre"] = [round(v, 2) for v in self.centre]
        d["box"] = list(self.box)
        d["confidence"] = round(self.confidence, 4)
        return d


def find_suspects(
    labels: np.ndarray,
    human: np.ndarray,
    predicted: np.ndarray,
    confidence: np.ndarray,
    threshold: float = 0.9,
    min_pixels: int = 1,
) -> list[Suspect]:
    """Human-labeled pixels the model contradicts with confidence ≥ ``threshold``, as patches
    (8-connected, one label and one predicted class each), most suspect first (pixels × mean
    confidence).

    These are likely annotation mistakes — or places where the model is confidently wrong;
    either way a person should look.
    """
    lab = np.asarray(labels)
    pred = np.asarray(predicted)
    conf = np.asarray(confidence, np.float64)
    hit = np.asarray(human, bool) & (lab > 0) & (pred > 0) & (pred != lab) & (conf >= threshold)
    if not hit.any():
        return []
    # one patch per connected run of the same (label, predicted) pair
    pair = np.where(hit, lab.astype(np.int64) * 65536 + pred.astype(np.int64), 0)
    out: list[Suspect] = []
    for value in np.unique(pair[hit]):
        comp, _n_comp = ndi.label(pair == value, structure=np.ones((3, 3), bool))
        slices = ndi.find_objects(comp)
        for i, sl in enumerate(slices, start=1):
            if sl is None:
                continue
            part = comp[sl] == i
            size = int(part.sum())
            if size < min_pixels:
                continue
            rr, cc = np.nonzero(part)
            out.append(
                Suspect(
                    label=int(value // 65536),
                    predicted=int(value % 65536),
                    pixels=size,
                    confidence=float(conf[sl][part].mean()),
                    centre=(float(rr.mean() + sl[0].start), float(cc.mean() + sl[1].start)),
                    box=(sl[0].start, sl[0].stop, sl[1].start, sl[1].stop),
                )
            )
    out.sort(key=lambda s: -s.pixels * s.confidence)
    return out
