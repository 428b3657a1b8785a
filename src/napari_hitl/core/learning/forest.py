"""The ilastik-style baseline: multiscale filter features per band + a random forest."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_hitl.core.errors import StoreError, short_reason
from napari_hitl.core.learning.base import TiledLogits
from napari_hitl.core.learning.data import (
    LabeledImage,
    Normalization,
    class_log_prior,
    human_class_counts,
)
from napari_hitl.core.learning.net import (
    TrainConfig,
    TrainJob,
    TrainReport,
    calibrate,
    calibration_objective,
    prepare_training,
)
from napari_hitl.core.progress import CancelToken, Progress

SIGMAS = (1.0, 2.0, 4.0, 8.0)  # ilastik's default set minus 0.3/16: the same family of filters
FEATURE_HALO = 40  # 4 sigma of the largest Gaussian (32 px) + the gradients taken after it
FOREST_FORMAT = "napari-hitl-forest-npz/1"  # config["format"] of a forest checkpoint
OLD_FOREST_PROBLEM = (
    "was saved by an older napari-hitl as a pickle, a format that can run code, and was not loaded"
)
_ZIP_MAGIC = b"PK\x03\x04"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed entry time: the same forest gives the same bytes
_NODE_REQUIRED = ("left_child", "right_child", "feature", "threshold")


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


class ForestClassifier(TiledLogits):
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
        self, images: Sequence[LabeledImage], config: TrainConfig, cancel: CancelToken | None = None
    ) -> TrainJob:
        """Train a fresh forest on class-balanced labeled pixels (forests do not warm-start)."""
        from sklearn.ensemble import RandomForestClassifier

        t0 = time.perf_counter()
        config.check()
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
        calibrate(self, images, held, report, calibration_objective(config, "rf"))
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
        """Log-probabilities ``K, h, w`` of the centre of a normalized window padded by
        :attr:`halo` (the per-tile step of :meth:`logits_job`)."""
        return self._forward(window)

    def state(self) -> tuple[bytes, dict[str, Any]]:
        """The forest as an npz archive of plain arrays, and the configuration.

        Returns
        -------
        blob, config
            ``blob`` is :func:`forest_to_bytes` of the fitted forest (empty when untrained);
            ``config`` is JSON, with ``format`` = :data:`FOREST_FORMAT`.
        """
        blob = forest_to_bytes(self.forest) if self.forest is not None else b""
        return blob, {
            **self.common_config(),
            "format": FOREST_FORMAT,
            "n_estimators": self.n_estimators,
        }

    @classmethod
    def from_state(cls, blob: bytes, config: dict[str, Any]) -> ForestClassifier:
        """Inverse of :meth:`state` (its ``blob, config``), predicting exactly as the saved
        classifier; nothing is unpickled.

        Raises
        ------
        StoreError
            The forest was pickled by an older napari-hitl (refused, never unpickled), or the
            bytes or configuration are not a forest this version can read. The message is one
            line saying what is wrong, without the store's name (the caller adds it).
        """
        fmt = config.get("format")
        if blob[:1] == b"\x80" or fmt is None:  # 0x80: the pickle protocol opcode
            raise StoreError(OLD_FOREST_PROBLEM)
        if fmt != FOREST_FORMAT:
            raise StoreError(
                f"is a forest in format {fmt!r}, which this napari-hitl cannot read "
                "(saved by a newer version?)"
            )
        try:
            clf = cls(
                Normalization.from_json(config["normalization"]),
                config["class_values"],
                config["class_names"],
                n_estimators=int(config.get("n_estimators", 100)),
            )
            if blob:
                clf.forest = forest_from_bytes(blob)
                _check_forest_fits(clf.forest, clf)
            clf.restore_calibration(config)
            clf.trained = bool(config.get("trained", True)) and clf.forest is not None
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"cannot be read as a forest ({short_reason(exc)})") from exc
        return clf


# --------------------------------------------------------------------------- serialization
def forest_to_bytes(forest: Any) -> bytes:
    """A fitted scikit-learn ``RandomForestClassifier`` as an npz archive of plain arrays.

    The trees' node arrays are concatenated (``node_counts`` splits them): ``nodes.<field>``
    for every field of scikit-learn's node record (``left_child``, ``right_child``,
    ``feature``, ``threshold``, ``impurity``, ``n_node_samples``, ``weighted_n_node_samples``,
    ``missing_go_to_left``), ``values`` (nodes × outputs × classes), ``max_depths``,
    ``tree_random_states``, ``classes``, ``tree_classes``, and ``meta``: UTF-8 JSON with the
    format, ``n_features``, ``n_outputs``, ``n_classes``, ``max_features`` and the forest's
    parameters. No object arrays, so :func:`forest_from_bytes` never unpickles; the same forest
    always gives the same bytes (entry times are fixed).

    Parameters
    ----------
    forest
        A fitted single-output ``RandomForestClassifier``.

    Returns
    -------
    bytes
        An uncompressed zip of ``.npy`` files, readable by ``np.load(allow_pickle=False)``.
    """
    from sklearn.ensemble import RandomForestClassifier

    trees = list(forest.estimators_)
    states = [t.tree_.__getstate__() for t in trees]
    nodes = np.concatenate([st["nodes"] for st in states])
    arrays: dict[str, np.ndarray] = {
        f"nodes.{field}": np.ascontiguousarray(nodes[field]) for field in nodes.dtype.names
    }
    arrays["values"] = np.ascontiguousarray(
        np.concatenate([st["values"] for st in states]), np.float64
    )
    arrays["node_counts"] = np.array([st["node_count"] for st in states], np.int64)
    arrays["max_depths"] = np.array([st["max_depth"] for st in states], np.int64)
    arrays["tree_random_states"] = np.array(
        [t.random_state if isinstance(t.random_state, int) else -1 for t in trees], np.int64
    )
    arrays["classes"] = np.asarray(forest.classes_)
    arrays["tree_classes"] = np.asarray(trees[0].classes_)
    known = RandomForestClassifier().get_params()
    params = {
        k: v
        for k, v in forest.get_params().items()
        if k in known and (v is None or isinstance(v, str | int | float | bool))
    }
    meta = {
        "format": FOREST_FORMAT,
        "n_features": int(forest.n_features_in_),
        "n_outputs": int(forest.n_outputs_),
        "n_classes": int(forest.n_classes_),
        "max_features": int(trees[0].max_features_),
        "params": params,
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for key, arr in arrays.items():
            with zf.open(zipfile.ZipInfo(f"{key}.npy", _ZIP_DATE), "w", force_zip64=True) as f:
                np.lib.format.write_array(f, arr, allow_pickle=False)
    return buf.getvalue()


def _read_arrays(blob: bytes) -> dict[str, np.ndarray]:
    """The plain numeric arrays of an npz blob; anything else is refused before it is read."""
    if not blob.startswith(_ZIP_MAGIC):
        raise StoreError("is not a forest archive (its bytes are not an npz file)")
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED or info.file_size > len(blob):
                raise StoreError(f"has an unexpected entry {info.filename!r} in its archive")
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for key, arr in arrays.items():
        if arr.dtype.kind not in "biuf":
            raise StoreError(f"has a non-numeric array {key!r} ({arr.dtype}) in its archive")
    return arrays


def forest_from_bytes(blob: bytes) -> Any:
    """Rebuild the ``RandomForestClassifier`` of :func:`forest_to_bytes` (nothing unpickled).

    Every tree is checked before scikit-learn sees it: children after their parent and inside
    the tree, every node but the root the child of exactly one node, split features inside
    ``n_features``, arrays of the declared shapes. So no stored tree can make prediction read
    outside its arrays or loop.

    Parameters
    ----------
    blob
        Bytes from :func:`forest_to_bytes`.

    Returns
    -------
    sklearn.ensemble.RandomForestClassifier
        Fitted, predicting exactly as the forest that was saved.

    Raises
    ------
    StoreError
        The bytes are not such an archive, or an array in it is missing or inconsistent.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier
    from sklearn.tree._tree import NODE_DTYPE, Tree

    arrays = _read_arrays(blob)

    def get(key: str, kind: str, ndim: int) -> np.ndarray:
        if key not in arrays:
            raise StoreError(f"lacks the array {key!r} in its archive")
        arr = arrays[key]
        if arr.dtype.kind not in kind or arr.ndim != ndim:
            raise StoreError(f"has a malformed array {key!r} ({arr.dtype}, {arr.shape})")
        return arr

    meta = json.loads(get("meta", "u", 1).tobytes().decode())
    if not isinstance(meta, dict) or meta.get("format") != FOREST_FORMAT:
        raise StoreError("has an archive of another format")
    n_features, n_outputs = int(meta["n_features"]), int(meta["n_outputs"])
    n_classes, max_features = int(meta["n_classes"]), int(meta["max_features"])
    if n_outputs != 1 or n_features < 1 or n_classes < 1:
        raise StoreError(f"has {n_outputs} outputs, {n_features} features, {n_classes} classes")
    counts = get("node_counts", "iu", 1).astype(np.int64)
    depths = get("max_depths", "iu", 1).astype(np.int64)
    seeds = get("tree_random_states", "iu", 1).astype(np.int64)
    classes = get("classes", "iuf", 1)
    tree_classes = get("tree_classes", "iuf", 1)
    if (
        counts.size == 0
        or (counts < 1).any()
        or depths.shape != counts.shape
        or seeds.shape != counts.shape
        or classes.size != n_classes
        or tree_classes.size != n_classes
    ):
        raise StoreError("has tree counts or classes that do not fit together")
    total = int(counts.sum())
    fields: dict[str, np.ndarray] = {}
    for field in NODE_DTYPE.names:
        key = f"nodes.{field}"
        if key not in arrays and field not in _NODE_REQUIRED:
            continue  # a field this version has and the saving one had not: zeros
        arr = get(key, "iu" if NODE_DTYPE.fields[field][0].kind in "iu" else "f", 1)
        if arr.size != total:
            raise StoreError(f"has {arr.size} values of {key!r} for {total} nodes")
        fields[field] = arr
    values = get("values", "f", 3)
    if values.shape != (total, n_outputs, n_classes):
        raise StoreError(f"has values of shape {values.shape} for {total} nodes")

    params = dict(meta.get("params", {}))
    known = RandomForestClassifier().get_params()
    forest = RandomForestClassifier(
        **{
            k: v
            for k, v in params.items()
            if k in known and (v is None or isinstance(v, str | int | float | bool))
        }
    )
    tree_params = {p: getattr(forest, p) for p in forest.estimator_params}
    estimators = []
    start = 0
    for count, depth, seed in zip(counts.tolist(), depths.tolist(), seeds.tolist(), strict=True):
        part = slice(start, start + count)
        start += count
        nodes = np.zeros(count, NODE_DTYPE)
        for field, arr in fields.items():
            nodes[field] = arr[part]
        _check_tree(nodes, depth, n_features)
        tree = Tree(n_features, np.array([n_classes], np.intp), n_outputs)
        tree.__setstate__(
            {
                "max_depth": depth,
                "node_count": count,
                "nodes": nodes,
                "values": np.ascontiguousarray(values[part], np.float64),
            }
        )
        est = DecisionTreeClassifier(**{**tree_params, "random_state": seed if seed >= 0 else None})
        est.tree_ = tree
        est.n_features_in_ = n_features
        est.n_outputs_ = n_outputs
        est.classes_ = tree_classes.copy()
        est.n_classes_ = np.intp(n_classes)
        est.max_features_ = max_features
        estimators.append(est)
    forest.estimator_ = DecisionTreeClassifier(**tree_params)
    forest.estimators_ = estimators
    forest.n_features_in_ = n_features
    forest.n_outputs_ = n_outputs
    forest.classes_ = classes.copy()
    forest.n_classes_ = n_classes
    return forest


def _check_tree(nodes: np.ndarray, max_depth: int, n_features: int) -> None:
    """Refuse a tree prediction could not walk safely (see :func:`forest_from_bytes`)."""
    n = nodes.size
    left, right, feature = nodes["left_child"], nodes["right_child"], nodes["feature"]
    leaf = left == -1
    inner = np.flatnonzero(~leaf)
    if (
        not np.array_equal(right == -1, leaf)
        or (left[inner] <= inner).any()
        or (right[inner] <= inner).any()
        or (left[inner] >= n).any()
        or (right[inner] >= n).any()
        or not np.array_equal(np.sort(np.concatenate([left[inner], right[inner]])), np.arange(1, n))
        or (feature[inner] < 0).any()
        or (feature[inner] >= n_features).any()
    ):
        raise StoreError("has a tree whose nodes do not form a valid tree")
    depth, frontier = 0, np.zeros(1, np.int64)
    while True:  # ends: children are unique and after their parent
        frontier = frontier[~leaf[frontier]]
        if frontier.size == 0:
            break
        frontier = np.concatenate([left[frontier], right[frontier]])
        depth += 1
    if depth != max_depth:
        raise StoreError(f"has a tree of depth {depth} recorded as {max_depth}")


def _check_forest_fits(forest: Any, clf: ForestClassifier) -> None:
    """Refuse a forest whose classes or feature count do not fit the classifier's config."""
    k = len(clf.class_values)
    classes = np.asarray(forest.classes_)
    if (
        classes.dtype.kind not in "iu"
        or np.unique(classes).size != classes.size
        or (classes < 0).any()
        or (classes >= k).any()
    ):
        raise StoreError(f"has forest classes {classes.tolist()} that are not among its {k}")
    bands = len(clf.normalization.channel_names)  # the bands, and the row-position cue
    expected = pixel_features(np.zeros((bands, 8, 8), np.float32)).shape[0]
    if forest.n_features_in_ != expected:
        raise StoreError(
            f"has a forest on {forest.n_features_in_} features, not the {expected} of its "
            f"{bands} input channels"
        )
