"""The ilastik-style baseline: multiscale filter features per band + a random forest."""

from __future__ import annotations

import io
import pickle
import time
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np

from napari_hitl.core.classifier import (
    TrainConfig,
    TrainReport,
    calibrate,
    class_log_prior,
    human_class_counts,
    prepare_training,
)
from napari_hitl.core.data import LabeledImage, Normalization
from napari_hitl.core.progress import CancelToken, Progress
from napari_hitl.core.tiling import tiled_apply

SIGMAS = (1.0, 2.0, 4.0, 8.0)  # ilastik's default set minus 0.3/16: the same family of filters
FEATURE_HALO = 40  # 4 sigma of the largest Gaussian (32 px) + the gradients taken after it


def pixel_features(x: np.ndarray) -> np.ndarray:
    """Intensity, edge and texture features of every band at :data:`SIGMAS`: ``F, H, W`` float32.

    scikit-image's ``multiscale_basic_features`` (Gaussian smoothing, Sobel of the smoothed image,
    Hessian eigenvalues) for each band, as ilastik's pixel classification does.
    """
    from skimage.feature import multiscale_basic_features

    feats = multiscale_basic_features(
        np.moveaxis(x, 0, -1),
        channel_axis=-1,
        intensity=True,
        edges=True,
        texture=True,
        sigma_min=SIGMAS[0],
        sigma_max=SIGMAS[-1],
        num_sigma=len(SIGMAS),
    )
    return np.moveaxis(feats.astype(np.float32, copy=False), -1, 0)


class ForestClassifier:
    """Random forest on multiscale filter features (the peer the networks are measured against)."""

    kind = "rf"
    halo = FEATURE_HALO
    default_tile = 512  # 240 features per pixel: bigger tiles cost gigabytes

    def __init__(
        self,
        normalization: Normalization,
        class_values: Sequence[int],
        class_names: Sequence[str],
        n_estimators: int = 100,
        max_samples_per_class: int = 5000,
    ) -> None:
        self.normalization = normalization
        self.class_values = [int(v) for v in class_values]
        self.class_names = list(class_names)
        self.n_estimators = n_estimators
        self.max_samples_per_class = max_samples_per_class
        self.forest: Any = None
        self.temperature = 1.0
        self.class_log_prior = np.zeros(len(self.class_values), np.float32)
        self.trained = False

    def fit(
        self,
        images: Sequence[LabeledImage],
        config: TrainConfig,
        cancel: CancelToken | None = None,
    ) -> Generator[Progress, None, TrainReport]:
        """Train a fresh forest on class-balanced labeled pixels (forests do not warm-start)."""
        from sklearn.ensemble import RandomForestClassifier

        t0 = time.perf_counter()
        rng = np.random.default_rng(config.seed)
        split = prepare_training(images, self.class_names, config, rng)
        counts, human, train_images, held = split.counts, split.human, split.train, split.held
        k = len(self.class_values)
        feats_x, feats_y, feats_w = [], [], []
        self._features_cache = {}
        for i, im in enumerate(train_images):
            if cancel is not None:
                cancel.raise_if_cancelled()
            feats = self._features(im.x)
            self._features_cache[id(images[i].x)] = feats
            for c in range(k):
                idx = np.flatnonzero(im.target.ravel() == c)
                if idx.size == 0:
                    continue
                take = rng.choice(
                    idx, size=min(idx.size, self.max_samples_per_class), replace=False
                )
                feats_x.append(feats.reshape(feats.shape[0], -1)[:, take].T)
                feats_y.append(np.full(take.size, c))
                feats_w.append(im.weight.ravel()[take])
            yield Progress(i + 1, len(train_images) + 1, f"features {i + 1}/{len(train_images)}")
        self.class_log_prior = class_log_prior(human_class_counts(images, human, k))
        x = np.concatenate(feats_x)
        y = np.concatenate(feats_y)
        w = np.concatenate(feats_w)
        # Equal class distribution, as for the networks: weight each class to the same total.
        for c in np.unique(y):
            w[y == c] *= len(y) / (len(np.unique(y)) * w[y == c].sum())
        forest = RandomForestClassifier(
            n_estimators=self.n_estimators,
            n_jobs=config.threads or -1,
            random_state=config.seed,
            min_samples_leaf=2,
        )
        forest.fit(x, y, sample_weight=w)
        self.forest = forest
        self.trained = True
        yield Progress(len(train_images) + 1, len(train_images) + 1, "forest trained")
        report = TrainReport(
            steps=self.n_estimators,
            seconds=0.0,
            final_loss=float("nan"),
            class_pixels=counts.tolist(),
            holdout_pixels=int(sum(f.size for _, f in held)),
            temperature=1.0,
        )
        calibrate(self, images, held, report)
        self._features_cache = {}
        report.seconds = time.perf_counter() - t0
        return report

    def _features(self, x: np.ndarray) -> np.ndarray:
        cache = getattr(self, "_features_cache", {})
        if id(x) in cache:
            return cache[id(x)]
        return pixel_features(x)

    def _forward(self, window: np.ndarray) -> np.ndarray:
        feats = pixel_features(window)
        f, h, w = feats.shape
        proba = np.zeros((len(self.class_values), h * w), np.float32)
        proba[self.forest.classes_] = self.forest.predict_proba(feats.reshape(f, -1).T).T
        h0 = self.halo
        logits = np.log(np.clip(proba, 1e-4, 1.0)).reshape(-1, h, w)
        logits += self.class_log_prior[:, None, None]  # balanced forest → the project's prior
        return logits[:, h0 : h - h0, h0 : w - h0]

    def window_logits(self, window: np.ndarray) -> np.ndarray:
        """Logits ``K, h, w`` of the centre of a normalized window padded by :attr:`halo`.

        ``window`` is ``C, h + 2*halo, w + 2*halo``; this is the per-tile step of
        :meth:`logits_job`, for callers that cut the windows themselves (dask blocks).
        """
        return self._forward(window)

    def logits_job(
        self, x: np.ndarray, tile: int | None = 512, cancel: CancelToken | None = None
    ) -> Generator[Progress, None, np.ndarray]:
        """Log-probabilities ``K, H, W`` (the forest's logits); a progress generator."""
        return (
            yield from tiled_apply(
                self._forward, x, len(self.class_values), self.halo, 1, tile, cancel
            )
        )

    def logits(self, x: np.ndarray, tile: int | None = 512) -> np.ndarray:
        """Log-probabilities of a normalized image (no progress)."""
        from napari_hitl.core.progress import run_to_end

        return run_to_end(self.logits_job(x, tile))

    def state(self) -> tuple[bytes, dict[str, Any]]:
        """The pickled forest and the configuration (the store is the user's own file)."""
        buf = io.BytesIO()
        pickle.dump(self.forest, buf, protocol=pickle.HIGHEST_PROTOCOL)
        return buf.getvalue(), {
            "kind": self.kind,
            "normalization": self.normalization.to_json(),
            "class_values": self.class_values,
            "class_names": self.class_names,
            "temperature": self.temperature,
            "class_log_prior": self.class_log_prior.tolist(),
            "trained": self.trained,
            "n_estimators": self.n_estimators,
        }

    @classmethod
    def from_state(cls, blob: bytes, config: dict[str, Any]) -> ForestClassifier:
        """Inverse of :meth:`state`."""
        clf = cls(
            Normalization.from_json(config["normalization"]),
            config["class_values"],
            config["class_names"],
            n_estimators=int(config.get("n_estimators", 100)),
        )
        clf.forest = pickle.loads(blob)
        clf.temperature = float(config.get("temperature", 1.0))
        if config.get("class_log_prior") is not None:
            clf.class_log_prior = np.asarray(config["class_log_prior"], np.float32)
        clf.trained = bool(config.get("trained", True))
        return clf
