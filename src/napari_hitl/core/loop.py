"""The learning loop over a project store: train on its labels, predict its images, push, undo.

This is what the CLI (``napari-hitl train/predict/push/undo``) and the napari widgets call. The
trained model is kept in the store as the checkpoint ``latest`` with its configuration (bands,
normalization, classes, iteration); predictions are stored as derived arrays signed with the
model's hash, so pushing from a prediction made by an older model is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_hitl.core.classifier import TrainConfig, TrainReport
from napari_hitl.core.data import (
    IncompatibleBandsError,
    LabeledImage,
    Normalization,
    TrainingDataError,
    make_labeled_image,
    normalization_from_stats,
)
from napari_hitl.core.feedback import (
    DEFAULT_MARGIN,
    DEFAULT_THRESHOLD,
    PushRecord,
    accept_mask,
    store_push,
)
from napari_hitl.core.learner import (
    Classifier,
    list_checkpoints,
    load_checkpoint,
    make_classifier,
    save_checkpoint,
)
from napari_hitl.core.prediction import Prediction, predict_normalized
from napari_hitl.core.progress import CancelToken, Progress
from napari_hitl.core.store import ProjectStore

LATEST = "latest"
PREDICTION_KEYS = ("prediction", "confidence", "margin", "entropy", "probabilities")


@dataclass
class LoopState:
    """The project's model and where the loop stands."""

    classifier: Classifier
    iteration: int
    model_hash: str


def _hash(blob: bytes) -> str:
    return hashlib.blake2b(blob, digest_size=12).hexdigest()


def project_normalization(store: ProjectStore, names: Sequence[str]) -> Normalization:
    """Per-band normalization from the store's statistics of ``names`` (all must share bands)."""
    infos = [store.image_info(n) for n in names]
    bands = infos[0].band_names
    for info in infos[1:]:
        if info.band_names != bands:
            raise IncompatibleBandsError(
                f"images {infos[0].name!r} and {info.name!r} have different bands "
                f"({bands} vs {info.band_names}); one model needs the same bands everywhere"
            )
    return normalization_from_stats(bands, [[b.stats for b in info.bands] for info in infos])


def load_state(store: ProjectStore, checkpoint: str = LATEST) -> LoopState | None:
    """The stored model and its iteration, or ``None`` before the first training."""
    if checkpoint not in list_checkpoints(store):
        return None
    clf = load_checkpoint(store, checkpoint)
    arr = store._root["models"][checkpoint]  # type: ignore[index]
    config = dict(arr.attrs)["napari_hitl"]["config"]
    return LoopState(clf, int(config.get("iteration", 1)), str(config.get("model_hash", "")))


def _normalized(
    store: ProjectStore, name: str, norm: Normalization
) -> tuple[np.ndarray, np.ndarray]:
    """The image's bands normalized for ``norm``, and its valid-pixel mask (read once)."""
    info = store.image_info(name)
    norm.check(info.band_names, what=f"image {name!r}")
    if info.axes != "CYX":
        raise IncompatibleBandsError(
            f"image {name!r} is a {info.axes} stack; the loop works on 2-D images for now "
            "(import with --split to make one image per slice)"
        )
    valid = store.valid_mask(name)
    return norm.apply(np.asarray(store.image(name)[...]), valid), valid


def training_images(
    store: ProjectStore, names: Sequence[str], norm: Normalization, machine_weight: float
) -> list[LabeledImage]:
    """The labeled images among ``names`` ready for training."""
    values = [c.value for c in store.classes]
    out = []
    for name in names:
        labels = store.labels(name)
        if not labels.any():
            continue
        x, valid = _normalized(store, name, norm)
        out.append(
            make_labeled_image(
                name, x, labels, store.provenance(name), values, machine_weight, valid
            )
        )
    return out


def classifier_for_training(
    store: ProjectStore, config: TrainConfig, names: Sequence[str], fresh: bool = False
) -> tuple[Classifier, int]:
    """The classifier the next training continues (or a new one) and its iteration number.

    The stored model is continued unless ``fresh``, or it is another model kind, or the classes
    changed since it was trained.

    Raises
    ------
    TrainingDataError
        No images, or fewer than two classes.
    """
    if not names:
        raise TrainingDataError(f"{store.path} has no images; import some first")
    classes = store.classes
    if len(classes) < 2:
        raise TrainingDataError("define at least two classes before training")
    previous = None if fresh else load_state(store)
    if previous is not None and (
        previous.classifier.kind != config.model
        or previous.classifier.class_values != [c.value for c in classes]
    ):
        previous = None  # another model or other classes: start afresh
    if previous is not None:
        return previous.classifier, previous.iteration + 1
    norm = project_normalization(store, names)
    values, class_names = [c.value for c in classes], [c.name for c in classes]
    return make_classifier(config.model, norm, values, class_names), 1


def train_project(
    store: ProjectStore,
    config: TrainConfig | None = None,
    images: Sequence[str] | None = None,
    fresh: bool = False,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, tuple[TrainReport, LoopState]]:
    """Train on every labeled image (warm start from ``latest`` unless ``fresh``); save ``latest``.

    Raises
    ------
    TrainingDataError
        No labels, one class only, or no classes defined.
    IncompatibleBandsError
        Images with different bands, or bands unlike the stored model's.
    """
    config = config or TrainConfig()
    names = list(images) if images is not None else store.image_names()
    clf, iteration = classifier_for_training(store, config, names, fresh)
    data = training_images(store, names, clf.normalization, config.machine_weight)
    if not data:
        raise TrainingDataError("there are no labels yet: paint a few pixels of each class first")
    report = yield from clf.fit(data, config, cancel)
    blob, _ = clf.state()
    model_hash = _hash(blob)
    save_checkpoint(
        store,
        LATEST,
        clf,
        {"iteration": iteration, "model_hash": model_hash, "train_config": config.to_json()},
    )
    return report, LoopState(clf, iteration, model_hash)


def predict_project_image(
    store: ProjectStore,
    name: str,
    state: LoopState | None = None,
    write: bool = True,
    tile: int | str | None = "auto",
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, Prediction]:
    """Predict image ``name`` with the project's model; store the results as signed arrays."""
    state = state or load_state(store)
    if state is None:
        raise TrainingDataError("no model yet: train first")
    x, valid = _normalized(store, name, state.classifier.normalization)
    pred = yield from predict_normalized(state.classifier, x, valid, tile, cancel)
    if write and store.writable:
        sig = store.signature(name, model_hash=state.model_hash, iteration=state.iteration)
        for key, arr in (
            ("prediction", pred.labels),
            ("confidence", pred.confidence),
            ("margin", pred.margin),
            ("entropy", pred.entropy),
            ("probabilities", pred.probabilities),
        ):
            store.write_derived(name, key, arr, sig)
    return pred


def stored_prediction(
    store: ProjectStore, name: str, state: LoopState | None = None
) -> dict[str, Any]:
    """The stored prediction and confidence of ``name``, refused if made by another model."""
    state = state or load_state(store)
    if state is None:
        raise TrainingDataError("no model yet: train first")
    expected = {"model_hash": state.model_hash, "iteration": state.iteration}
    return {k: store.read_derived(name, k, expected) for k in ("prediction", "confidence")}


def push_project_image(
    store: ProjectStore,
    name: str,
    threshold: float = DEFAULT_THRESHOLD,
    region: np.ndarray | tuple[int, int, int, int] | None = None,
    state: LoopState | None = None,
    margin: int = DEFAULT_MARGIN,
) -> PushRecord:
    """Accept the current model's stored prediction of ``name`` at ``threshold`` into its labels.

    Only unlabeled pixels change, and only those ``margin`` px or more inside a confident region
    of one class (see :func:`napari_hitl.core.feedback.accept_mask`); the push can be undone with
    :func:`napari_hitl.core.feedback.store_undo`.
    """
    state = state or load_state(store)
    if state is None:
        raise TrainingDataError("no model yet: train first")
    stored = stored_prediction(store, name, state)
    accept = accept_mask(
        stored["confidence"],
        threshold,
        region,
        store.valid_mask(name),
        predicted=stored["prediction"],
        margin=margin,
    )
    return store_push(store, name, stored["prediction"], accept, state.iteration)
