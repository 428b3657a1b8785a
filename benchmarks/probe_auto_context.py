"""The ``ac-`` probe of ``learning_ablation.py``: auto-context — the forest's class probabilities
as input channels of the U-Net.

Tu and Bai's auto-context (TPAMI 2010) and ilastik's autocontext workflow feed one classifier's
probability maps, beside the image, to the next. Here the ilastik-style forest
(:func:`napari_hitl.core.learning.forest.pixel_features`, 100 trees) is trained on the person's
strokes at every Train, and the U-Net reads its K class probabilities as K more bands. The
forest sees texture at σ up to 10 px that the U-Net's 18-px receptive field learns only
slowly; the U-Net adds shape, context and the machine labels.

The probabilities a network trains on must be like the ones it will be given on new images:
on a stroked image an in-sample forest is sure of every stroked pixel, and the network would
learn to copy it. So a stroked image's channels come from a forest trained on the strokes of
the *other* stroked images (``folds`` folds by image, "out of fold", as stacking does), and
every other image — machine-labeled ones, the pool, the test set — gets the forest trained on
all strokes, which never saw its pixels. With one stroked image there is no out-of-fold forest
and its channels are uniform.

Costs: a forest on every image of the pool per iteration (its features cached per image while
a byte budget allows), and ``folds + 1`` forests per Train.

The ``ft<T>w<W>-`` probe (:class:`ForestTeacher`) uses the same forest of all strokes as a
teacher of the plain U-Net instead.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

FEATURE_CACHE_BYTES = 3 * 2**30  # per run; images beyond it recompute their features


class _StrokeForest:
    """A U-Net (``self.unet``, set by the subclass) beside a forest trained on the person's
    strokes; what the U-Net does not override is the U-Net's (calibration, classes, halo...)."""

    def __init__(self, n_classes: int) -> None:
        self.k = n_classes
        self.forest: Any = None  # the forest of all strokes, after fit
        self._features: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._cached = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["unet"], name)

    @property
    def kind(self) -> str:
        return "unet"

    def features(self, x: np.ndarray) -> np.ndarray:
        """The forest's pixel features ``N, F`` of a normalized image (cached by identity:
        the simulation keeps each image's array for the whole run)."""
        from napari_hitl.core.learning.forest import pixel_features

        key = id(x)
        if key in self._features:
            return self._features[key][1]
        f = pixel_features(x)
        f = np.ascontiguousarray(f.reshape(f.shape[0], -1).T)
        if self._cached + f.nbytes <= FEATURE_CACHE_BYTES:
            self._features[key] = (x, f)  # x kept so that its id is not reused
            self._cached += f.nbytes
        return f

    def train_forest(self, images: Sequence[Any], seed: int, threads: int | None) -> Any:
        """A forest on the human strokes of ``images`` (None without any), class-balanced and
        sized as the ``rf`` model's (100 trees, ≤ 5000 pixels per class and image)."""
        from sklearn.ensemble import RandomForestClassifier

        from napari_hitl.core.learning.data import human_mask

        rng = np.random.default_rng(seed)
        xs, ys = [], []
        for im in images:
            human = human_mask(im).ravel()
            t = im.target.ravel()
            f = self.features(im.x)
            for c in range(self.k):
                idx = np.flatnonzero(human & (t == c))
                if idx.size:
                    take = rng.choice(idx, size=min(idx.size, 5000), replace=False)
                    xs.append(f[take])
                    ys.append(np.full(take.size, c))
        if not xs:
            return None
        y = np.concatenate(ys)
        present = np.unique(y)
        w = np.ones(y.size)
        for c in present:  # equal class totals, as the forest model
            w[y == c] = y.size / (present.size * (y == c).sum())
        forest = RandomForestClassifier(
            n_estimators=100, n_jobs=threads or -1, random_state=seed, min_samples_leaf=2
        )
        forest.fit(np.concatenate(xs), y, sample_weight=w)
        return forest

    def probabilities(self, x: np.ndarray, forest: Any = "all") -> np.ndarray:
        """``K, H, W`` class probabilities of ``forest`` (``"all"``: the one of all strokes);
        uniform where there is none."""
        forest = self.forest if isinstance(forest, str) else forest
        h, w = x.shape[1:]
        p = np.full((self.k, h * w), 1.0 / self.k, np.float32)
        if forest is not None:
            p[:] = 0.0
            p[forest.classes_] = forest.predict_proba(self.features(x)).T
        return p.reshape(self.k, h, w)

    def logits(self, x: np.ndarray, tile: Any = "auto") -> np.ndarray:
        """``logits_job`` without progress."""
        from napari_hitl.core.progress import run_to_end

        return run_to_end(self.logits_job(x, tile))


class AutoContext(_StrokeForest):
    """A U-Net whose input is the bands plus the stroke-trained forest's class probabilities.

    After :meth:`fit`, ``fold_of`` maps each stroked image's index to its fold and
    ``fold_forests`` holds the fold's forest (trained on the other folds' strokes).

    Parameters
    ----------
    normalization, class_values, class_names
        As for :func:`napari_hitl.core.learning.registry.make_classifier`.
    folds
        Folds (by stroked image) of the out-of-fold forests.
    """

    def __init__(
        self, normalization: Any, class_values: Sequence[int], class_names: Sequence[str],
        folds: int = 3,
    ) -> None:  # fmt: skip
        from napari_hitl.core.learning.data import Normalization
        from napari_hitl.core.learning.net import NetClassifier

        super().__init__(len(class_values))
        k, self.folds = self.k, folds
        wide = Normalization(
            [*normalization.band_names, *[f"rf p({n})" for n in class_names]],
            [*normalization.low, *[0.0] * k],
            [*normalization.high, *[1.0] * k],
            normalization.row_position,
        )
        self.unet = NetClassifier("unet", wide, class_values, class_names)
        self.fold_of: dict[int, int] = {}
        self.fold_forests: list[Any] = []

    def _widen(self, x: np.ndarray, p: np.ndarray) -> np.ndarray:
        return np.concatenate([x, p.astype(x.dtype)])

    def fit(self, images: Sequence[Any], config: Any, cancel: Any = None) -> Generator:
        """Forests on the strokes (all, and out of fold), then the U-Net on the widened
        images; a progress generator returning the U-Net's report."""
        from napari_hitl.core.learning.data import human_mask
        from napari_hitl.core.progress import Progress

        stroked = [i for i, im in enumerate(images) if human_mask(im).any()]
        self.forest = self.train_forest([images[i] for i in stroked], config.seed, config.threads)
        yield Progress(0, 1, "auto-context: forest of all strokes")
        self.fold_of, self.fold_forests = {}, []
        if len(stroked) >= 2:
            n = min(self.folds, len(stroked))
            order = np.random.default_rng(config.seed + 1).permutation(len(stroked))
            self.fold_of = {stroked[j]: r % n for r, j in enumerate(order)}
            self.fold_forests = [
                self.train_forest(
                    [images[i] for i in stroked if self.fold_of[i] != f], config.seed + 1 + f,
                    config.threads,
                )
                for f in range(n)
            ]  # fmt: skip
        wide = []
        for i, im in enumerate(images):
            if i in self.fold_of:
                p = self.probabilities(im.x, self.fold_forests[self.fold_of[i]])
            elif i in stroked:  # the only stroked image: no forest that has not seen it
                p = self.probabilities(im.x, None)
            else:
                p = self.probabilities(im.x)
            extra = {**im.extra, "forest_channels": self.k}
            wide.append(replace(im, x=self._widen(im.x, p), extra=extra))
        yield Progress(0, 1, "auto-context: forest channels")
        return (yield from self.unet.fit(wide, config, cancel))

    def logits_job(self, x: np.ndarray, tile: Any = "auto", cancel: Any = None) -> Generator:
        """The U-Net's logits of ``x`` widened by the forest's probabilities."""
        wide = self._widen(x, self.probabilities(x))
        return (yield from self.unet.logits_job(wide, tile, cancel))


def _replace_unet(build: Any) -> None:
    """The simulation's ``unet`` becomes ``build(normalization, class_values, class_names)``."""
    from napari_hitl.core.evaluation import simulate

    single = simulate.make_classifier

    def make(kind, normalization, class_values, class_names):
        if kind != "unet":
            return single(kind, normalization, class_values, class_names)
        return build(normalization, class_values, class_names)

    simulate.make_classifier = make


def install(folds: int = 3, dropout: float = 0.0) -> None:
    """Make the simulation's ``unet`` an :class:`AutoContext` U-Net; with ``dropout`` a
    training crop's forest channels are uniform (no information) with that probability, so
    that the network cannot lean on them alone."""
    if dropout > 0:
        _install_channel_dropout(dropout)
    _replace_unet(lambda *args: AutoContext(*args, folds))


def _install_channel_dropout(p: float) -> None:
    """Training crops whose forest channels (the last K of the bands) are set to 1/K with
    probability ``p``; the K is the :class:`AutoContext` U-Net's, read from the batches'
    images (their extra ``"forest_channels"``)."""
    import torch

    from napari_hitl.core.learning import batches

    cls = batches.PatchBatches
    init, call = cls.__init__, cls.__call__

    def dropping_init(self, images, *args, **kwargs):
        init(self, images, *args, **kwargs)
        self.forest_k = int(images[0].extra.get("forest_channels", 0)) if images else 0

    def dropping_call(self):
        x, t, w = call(self)
        k = getattr(self, "forest_k", 0)
        if k:
            drop = torch.from_numpy(self.rng.random(x.shape[0]) < p)
            c = self.bands
            x[drop, c - k : c] = 1.0 / k
        return x, t, w

    cls.__init__, cls.__call__ = dropping_init, dropping_call


class ForestTeacher(_StrokeForest):
    """The ``ft<T>w<W>-`` probe (co-training's idea, Blum and Mitchell 1998): the forest of all
    strokes labels the training images' unlabeled pixels where it is at least ``T`` sure, at
    weight ``W`` (below the machine labels' 0.5), and the plain U-Net trains on them too.

    The forest is a teacher only: the U-Net's input and inference are the default's, so a
    prediction costs what it did. Human labels and pushed labels are never overwritten; the
    class prior and the temperature still come from the person's strokes alone. (A
    ``LabeledImage`` does not tell unlabeled from invalid pixels — both are target -1 — so
    this is for the simulation's images, which have no invalid pixels.)
    """

    def __init__(
        self, normalization: Any, class_values: Sequence[int], class_names: Sequence[str],
        sure: float = 0.9, weight: float = 0.2,
    ) -> None:  # fmt: skip
        from napari_hitl.core.learning.net import NetClassifier

        super().__init__(len(class_values))
        self.unet = NetClassifier("unet", normalization, class_values, class_names)
        self.sure, self.teach_weight = sure, weight

    def fit(self, images: Sequence[Any], config: Any, cancel: Any = None) -> Generator:
        """The forest of all strokes, its sure pixels as weak labels, then the U-Net."""
        from napari_hitl.core.learning.data import human_mask

        stroked = [im for im in images if human_mask(im).any()]
        self.forest = self.train_forest(stroked, config.seed, config.threads)
        taught = []
        for im in images:
            p = self.probabilities(im.x)
            sure = (im.target < 0) & (p.max(0) >= self.sure)
            target, weight = im.target.copy(), im.weight.copy()
            target[sure] = p.argmax(0)[sure]
            weight[sure] = self.teach_weight
            taught.append(replace(im, target=target, weight=weight))
        return (yield from self.unet.fit(taught, config, cancel))

    def logits_job(self, x: np.ndarray, tile: Any = "auto", cancel: Any = None) -> Generator:
        """The plain U-Net's logits."""
        return (yield from self.unet.logits_job(x, tile, cancel))


def install_teacher(sure: float, weight: float) -> None:
    """Make the simulation's ``unet`` a :class:`ForestTeacher` U-Net."""
    _replace_unet(lambda *args: ForestTeacher(*args, sure, weight))
