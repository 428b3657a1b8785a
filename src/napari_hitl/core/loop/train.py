"""Training on a project's labels: the labeled images (windows around strokes for large
planes), the classifier to continue or start, one Train."""

from __future__ import annotations

from collections.abc import Generator, Sequence

import numpy as np

from napari_hitl.core.choices import AUTO_MODEL, DEFAULT_MODEL
from napari_hitl.core.learning.auto import auto_classifier
from napari_hitl.core.learning.data import (
    LabeledImage,
    Normalization,
    TrainingDataError,
    make_labeled_image,
)
from napari_hitl.core.learning.net import TrainConfig, TrainReport
from napari_hitl.core.learning.networks import bank_margin
from napari_hitl.core.learning.registry import (
    Classifier,
    make_classifier,
)
from napari_hitl.core.loop.history import train_record
from napari_hitl.core.loop.reading import normalized_window, slice_name, stack_depth, window_slices
from napari_hitl.core.loop.state import LoopState, load_state, project_normalization, save_latest
from napari_hitl.core.progress import CancelToken, Progress
from napari_hitl.core.store import ProjectStore


# ------------------------------------------------------------------------------ training
def training_images(
    store: ProjectStore,
    names: Sequence[str],
    norm: Normalization,
    machine_weight: float,
    bank: Sequence[float] | None = None,
) -> list[LabeledImage]:
    """The labeled images among ``names`` ready for training.

    A 2-D image with labels is one :class:`LabeledImage`; a stack gives one per slice holding a
    label (named by :func:`slice_name`, with that slice's provenance), unlabeled slices skipped.

    A plane larger than :data:`~napari_hitl.core.loop.label_windows.WINDOWED_MIN_PIXELS` is never
    read whole: its labels are scanned tile by tile and only windows around them (with the
    context training needs, see :func:`~napari_hitl.core.loop.label_windows.label_windows`) are
    read, each one a :class:`LabeledImage` with the plane's name. A U-Net with a filter bank at
    scales ``bank`` (``TrainConfig.filter_bank``) needs the bank's margin more context there.
    """
    from napari_hitl.core.loop import label_windows as lw

    values = [c.value for c in store.classes]
    margin = lw.WINDOW_MARGIN + bank_margin(list(bank) if bank else None)  # for big planes
    out = []
    for name in names:
        info = store.image_info(name)
        depth = stack_depth(info)
        labels_arr = store.labels_array(name)
        prov_arr = store.provenance_array(name)
        h, w = (int(v) for v in info.spatial_shape[-2:])
        for k in range(depth) if depth else [None]:
            lead = () if k is None else (k,)
            plane = name if k is None else slice_name(name, info.axes[1], k)
            if h * w > lw.WINDOWED_MIN_PIXELS:
                windows = lw.label_windows(labels_arr, k, margin)
            else:
                windows = [(0, h, 0, w)] if np.asarray(labels_arr[lead]).any() else []
            for box in windows:
                whole = box == (0, h, 0, w)
                sel = (*lead, *window_slices(box))
                x, valid = normalized_window(
                    store, name, norm, index=k, window=None if whole else box
                )
                with store.read_lock():  # labels and provenance of one generation
                    labels = np.asarray(labels_arr[sel])  # type: ignore[index]
                    provenance = np.asarray(prov_arr[sel])  # type: ignore[index]
                out.append(
                    make_labeled_image(plane, x, labels, provenance, values, machine_weight, valid)
                )
    return out


def classifier_for_training(
    store: ProjectStore, config: TrainConfig, names: Sequence[str], fresh: bool = False
) -> tuple[Classifier, int]:
    """The classifier the next training continues (or a new one) and its iteration number.

    The stored model is continued unless ``fresh``, or it is another model kind, or the classes
    changed since it was trained, or it uses other bands than ``config.bands`` (every band of
    the images when ``None``) or another ``config.row_position``. A new classifier is
    normalized on those bands only. With ``config.model == "auto"`` any stored model is
    continued; a new one is the default model,
    untrained — :func:`train_project` then replaces it by the one ``auto`` chooses (live mode
    keeps it).

    Raises
    ------
    TrainingDataError
        No images, or fewer than two classes.
    IncompatibleBandsError
        An image lacks one of ``config.bands``, or (``bands`` unset) images with other bands.
    """
    if not names:
        raise TrainingDataError(f"{store.path} has no images; import some first")
    classes = store.classes
    if len(classes) < 2:
        raise TrainingDataError("define at least two classes before training")
    norm = project_normalization(store, names, bands=config.bands)
    norm.row_position = bool(config.row_position)
    previous = None if fresh else load_state(store)
    if previous is not None and (
        config.model not in (previous.classifier.kind, AUTO_MODEL)
        or previous.classifier.class_values != [c.value for c in classes]
        or previous.classifier.normalization.channel_names != norm.channel_names
    ):
        previous = None  # another model, other classes, other bands or cue: start afresh
    if previous is not None:
        return previous.classifier, previous.iteration + 1
    values, class_names = [c.value for c in classes], [c.name for c in classes]
    kind = DEFAULT_MODEL if config.model == AUTO_MODEL else config.model
    return make_classifier(kind, norm, values, class_names), 1


def train_project(
    store: ProjectStore,
    config: TrainConfig | None = None,
    images: Sequence[str] | None = None,
    fresh: bool = False,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, tuple[TrainReport, LoopState]]:
    """Train on every labeled image (warm start from ``latest`` unless ``fresh``); save ``latest``.

    Stacks train on their labeled slices; ``config.bands`` picks the bands the model uses. With
    ``config.model == "auto"`` and no model to continue, the candidates are compared on the
    strokes first (:mod:`napari_hitl.core.learning.auto`; the report's ``model_choice``). After
    saving, the Train is recorded in the store's history (effort so far, held-out accuracy; see
    :mod:`napari_hitl.core.loop.history`).

    Raises
    ------
    TrainingDataError
        No labels, one class only, or no classes defined.
    IncompatibleBandsError
        Images with different bands, or lacking one of ``config.bands``.
    ValueError
        A setting no training can use (:meth:`TrainConfig.check`), before anything is read.
    """
    config = config or TrainConfig()
    config.check()  # before any image is read (the windows of big planes need the bank's scales)
    names = list(images) if images is not None else store.image_names()
    clf, iteration = classifier_for_training(store, config, names, fresh)
    bank = config.filter_bank
    data = training_images(store, names, clf.normalization, config.machine_weight, bank)
    if not data:
        raise TrainingDataError("there are no labels yet: paint a few pixels of each class first")
    if not any((im.target >= 0).any() for im in data):
        raise TrainingDataError(
            "every labeled pixel is invalid (NaN, inf or nodata in at least one of the model's "
            f"bands: {', '.join(clf.normalization.band_names)}); leave out the band that is "
            "empty there (napari-hitl train --bands, or Model bands in the widget) or fix the image"
        )
    choice = None
    if config.model == AUTO_MODEL and not clf.trained:
        clf, choice = yield from auto_classifier(
            data, config, clf.normalization, clf.class_values, clf.class_names, cancel
        )
    report = yield from clf.fit(data, config, cancel)
    report.model_choice = choice.to_json() if choice is not None else None
    state = save_latest(store, clf, iteration, config.to_json())
    store.append_history(train_record(store, report, iteration, clf.kind))
    return report, state
