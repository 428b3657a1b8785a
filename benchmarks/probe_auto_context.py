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
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

FEATURE_CACHE_BYTES = 3 * 2**30  # per run; images beyond it recompute their features


class AutoContext:
    """A U-Net whose input is the bands plus the stroke-trained forest's class probabilities.

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

        k = len(class_values)
        self.k, self.folds = k, folds
        self.norm = normalization
        wide = Normalization(
            [*normalization.band_names, *[f"rf p({n})" for n in class_names]],
            [*normalization.low, *[0.0] * k],
            [*normalization.high, *[1.0] * k],
            normalization.row_position,
        )
        self.unet = NetClassifier("unet", wide, class_values, class_names)
        self.forest: Any = None
        self._features: dict[int, np.ndarray] = {}
        self._cached = 0

    def __getattr__(self, name: str) -> Any:  # calibration, classes, halo... are the U-Net's
        return getattr(self.__dict__["unet"], name)

    @property
    def kind(self) -> str:
        return "unet"

    # -------------------------------------------------------------- the forest channels
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

    def _train_forest(self, images: Sequence[Any], seed: int, threads: int | None) -> Any:
        from sklearn.ensemble import RandomForestClassifier

        rng = np.random.default_rng(seed)
        xs, ys = [], []
        for im in images:
            human = np.asarray(im.extra.get("human", im.weight >= 1.0), bool).ravel()
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

    def _widen(self, x: np.ndarray, p: np.ndarray) -> np.ndarray:
        return np.concatenate([x, p.astype(x.dtype)])

    # -------------------------------------------------------------- the classifier
    def fit(self, images: Sequence[Any], config: Any, cancel: Any = None) -> Generator:
        """Forests on the strokes (all, and out of fold), then the U-Net on the widened
        images; a progress generator returning the U-Net's report."""
        from napari_hitl.core.progress import Progress

        stroked = [
            i for i, im in enumerate(images)
            if np.asarray(im.extra.get("human", im.weight >= 1.0), bool).any()
        ]  # fmt: skip
        self.forest = self._train_forest([images[i] for i in stroked], config.seed, config.threads)
        yield Progress(0, 1, "auto-context: forest of all strokes")
        fold_of = {}
        if len(stroked) >= 2:
            n = min(self.folds, len(stroked))
            order = np.random.default_rng(config.seed + 1).permutation(len(stroked))
            fold_of = {stroked[j]: r % n for r, j in enumerate(order)}
            forests = [
                self._train_forest(
                    [images[i] for i in stroked if fold_of[i] != f], config.seed + 1 + f,
                    config.threads,
                )
                for f in range(n)
            ]  # fmt: skip
        wide = []
        for i, im in enumerate(images):
            if i in fold_of:
                p = self.probabilities(im.x, forests[fold_of[i]])
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

    def logits(self, x: np.ndarray, tile: Any = "auto") -> np.ndarray:
        from napari_hitl.core.progress import run_to_end

        return run_to_end(self.logits_job(x, tile))


def install(folds: int = 3, dropout: float = 0.0) -> None:
    """Make the simulation's ``unet`` an :class:`AutoContext` U-Net; with ``dropout`` a
    training crop's forest channels are uniform (no information) with that probability, so
    that the network cannot lean on them alone."""
    from napari_hitl.core.evaluation import simulate

    if dropout > 0:
        _install_channel_dropout(dropout)

    single = simulate.make_classifier

    def make(kind, normalization, class_values, class_names):
        if kind != "unet":
            return single(kind, normalization, class_values, class_names)
        return AutoContext(normalization, class_values, class_names, folds)

    simulate.make_classifier = make


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


class ForestTeacher(AutoContext):
    """The ``ft<T>w<W>-`` probe (co-training's idea, Blum and Mitchell 1998): the forest of all
    strokes labels the training images' unlabeled pixels where it is at least ``T`` sure, at
    weight ``W`` (below the machine labels' 0.5), and the plain U-Net trains on them too.

    The forest is a teacher only: the U-Net's input and inference are the default's, so a
    prediction costs what it did. Human labels and pushed labels are never overwritten; the
    class prior and the temperature still come from the person's strokes alone.
    """

    def __init__(
        self, normalization: Any, class_values: Sequence[int], class_names: Sequence[str],
        sure: float = 0.9, weight: float = 0.2,
    ) -> None:  # fmt: skip
        from napari_hitl.core.learning.net import NetClassifier

        self.k, self.folds = len(class_values), 0
        self.unet = NetClassifier("unet", normalization, class_values, class_names)
        self.forest = None
        self.sure, self.teach_weight = sure, weight
        self._features, self._cached = {}, 0

    def fit(self, images: Sequence[Any], config: Any, cancel: Any = None) -> Generator:
        """The forest of all strokes, its sure pixels as weak labels, then the U-Net."""
        stroked = [
            im for im in images if np.asarray(im.extra.get("human", im.weight >= 1.0), bool).any()
        ]
        self.forest = self._train_forest(stroked, config.seed, config.threads)
        taught = []
        for im in images:
            p = self.probabilities(im.x)
            sure = (im.target < 0) & (p.max(0) >= self.sure)
            if im.extra.get("valid") is not None:
                sure &= im.extra["valid"]
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
    from napari_hitl.core.evaluation import simulate

    single = simulate.make_classifier

    def make(kind, normalization, class_values, class_names):
        if kind != "unet":
            return single(kind, normalization, class_values, class_names)
        return ForestTeacher(normalization, class_values, class_names, sure, weight)

    simulate.make_classifier = make
