"""The learning loop over a project store: train on its labels, predict its images, push, undo.

This is what the CLI (``napari-hitl train/predict/push/undo``) and the napari widgets call. The
trained model is kept in the store as the checkpoint ``latest`` with its configuration (bands,
normalization, classes, iteration); predictions are stored as derived arrays signed with the
model's hash, so pushing from a prediction made by an older model is refused.

Bands
    A model uses the bands named in its normalization (``TrainConfig.bands``, default every band
    of the images). Every read of an image for a model picks those bands by name, so an image may
    hold other bands as well; an image lacking one of them is refused
    (:class:`~napari_hitl.core.data.IncompatibleBandsError` naming the band).

Stacks (``CZYX`` / ``CTYX`` images)
    The model is 2-D: it trains on and predicts one slice at a time. Every slice holding a label
    is one training image (named ``"NAME[z=3]"``); unlabeled slices are skipped.

    Stored predictions of a stack are *full-stack arrays*: ``prediction``, ``confidence``,
    ``margin`` and ``entropy`` are ``Z, H, W`` and ``probabilities`` is ``K, Z, H, W``, the same
    keys as for 2-D images. Their signature holds, besides the model's hash and iteration,
    ``slices``: the slices this model has predicted. Predicting one slice writes that slice in
    place and adds it to ``slices`` when the arrays already belong to the current model;
    otherwise (no arrays yet, or another model's) the arrays are first reset to zeros, so an
    array never mixes two models' predictions. Predicting the whole stack writes every slice.
    Reading or pushing a slice that is not in ``slices`` is refused
    (:class:`~napari_hitl.core.errors.StaleDataError`: predict it first).

Regions
    ``predict_project_image(..., region=(row0, row1, col0, col1))`` runs the model on the box
    plus the context (halo) it needs only, so the box equals a prediction of the whole image up
    to float rounding. The stored and returned arrays are still full size, with zeros outside
    the box (prediction 0, confidence 0, probabilities 0): a push can never accept a pixel outside
    it. The box is kept in the signature (``region``, or ``regions`` per slice of a stack).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_hitl.core.choices import DEFAULT_MARGIN, DEFAULT_THRESHOLD
from napari_hitl.core.classifier import TrainConfig, TrainReport
from napari_hitl.core.data import (
    IncompatibleBandsError,
    LabeledImage,
    Normalization,
    StackIndexError,
    TrainingDataError,
    make_labeled_image,
    normalization_from_stats,
)
from napari_hitl.core.errors import StaleDataError, StoreError
from napari_hitl.core.feedback import PushRecord, accept_mask, store_push
from napari_hitl.core.history import train_record
from napari_hitl.core.learner import (
    Classifier,
    list_checkpoints,
    load_checkpoint,
    make_classifier,
    save_checkpoint,
)
from napari_hitl.core.learner import model_hash as _hash
from napari_hitl.core.prediction import Prediction, predict_normalized
from napari_hitl.core.progress import CancelToken, Progress, relay
from napari_hitl.core.store import ATTR, LABEL_DTYPE, ImageInfo, ProjectStore
from napari_hitl.core.tiling import Box

LATEST = "latest"
PREDICTION_KEYS = ("prediction", "confidence", "margin", "entropy", "probabilities")


@dataclass
class LoopState:
    """The project's model and where the loop stands."""

    classifier: Classifier
    iteration: int
    model_hash: str


def project_normalization(
    store: ProjectStore, names: Sequence[str], *, bands: Sequence[str] | None = None
) -> Normalization:
    """Per-band normalization from the store's statistics of images ``names``.

    Parameters
    ----------
    store
        The project.
    names
        The images whose band statistics are combined.
    bands
        The band names the model uses, in its order; every image must hold them (it may hold
        others). ``None``: every band, and then all images must have the same bands.

    Raises
    ------
    IncompatibleBandsError
        With ``bands``: an image lacks one (named). Without: images with different bands.
    ValueError
        ``bands`` is empty or names a band twice.
    """
    infos = [store.image_info(n) for n in names]
    if bands is None:
        first = infos[0].band_names
        for info in infos[1:]:
            if info.band_names != first:
                raise IncompatibleBandsError(
                    f"images {infos[0].name!r} and {info.name!r} have different bands "
                    f"({first} vs {info.band_names}); one model needs the same bands everywhere "
                    "(train --bands picks bands every image has)"
                )
        return normalization_from_stats(first, [[b.stats for b in i.bands] for i in infos])
    wanted = list(bands)
    if not wanted or len(set(wanted)) != len(wanted):
        raise ValueError(f"bands {wanted} must name at least one band, each once")
    stats = []
    for info in infos:
        missing = [b for b in wanted if b not in info.band_names]
        if missing:
            raise IncompatibleBandsError(
                f"image {info.name!r} has no band {', '.join(repr(b) for b in missing)} (its "
                f"bands: {info.band_names}); train on bands every image has, or leave it out "
                "(--images)"
            )
        stats.append([info.bands[info.band_names.index(b)].stats for b in wanted])
    return normalization_from_stats(wanted, stats)


def load_state(store: ProjectStore, checkpoint: str = LATEST) -> LoopState | None:
    """The stored model and its iteration, or ``None`` before the first training."""
    if checkpoint not in list_checkpoints(store):
        return None
    clf = load_checkpoint(store, checkpoint)
    config = store.model_config(checkpoint)
    return LoopState(clf, int(config.get("iteration", 1)), str(config.get("model_hash", "")))


# ----------------------------------------------------------------------- stacks and boxes
def stack_depth(info: ImageInfo) -> int:
    """Number of slices of a ``CZYX``/``CTYX`` stack, 0 for a 2-D image."""
    return int(info.spatial_shape[0]) if len(info.spatial_shape) == 3 else 0


def slice_name(name: str, axis: str, index: int) -> str:
    """Name of one slice of a stack as training reports it: ``"cells[z=3]"``."""
    return f"{name}[{axis.lower()}={index}]"


def check_index(info: ImageInfo, index: int | None) -> int | None:
    """``index`` validated for image ``info`` (``None`` stays ``None``)."""
    if index is None:
        return None
    depth = stack_depth(info)
    if not depth:
        raise StackIndexError(
            f"image {info.name!r} is 2-D ({info.axes}): it has no slices; leave the slice out"
        )
    if not 0 <= int(index) < depth:
        raise StackIndexError(
            f"slice {index} is outside image {info.name!r}: it has {depth} "
            f"{info.axes[1]} slices (0..{depth - 1})"
        )
    return int(index)


def clip_region(region: Sequence[int], shape: tuple[int, int]) -> Box:
    """A ``(row0, row1, col0, col1)`` box clipped to an image of ``shape`` (``H, W``).

    Raises
    ------
    ValueError
        Not four numbers, or nothing of the box lies inside the image.
    """
    if len(region) != 4:
        raise ValueError(f"a region is (row0, row1, col0, col1), got {tuple(region)}")
    h, w = shape
    r0, r1, c0, c1 = (int(v) for v in region)
    box = (max(0, min(r0, h)), max(0, min(r1, h)), max(0, min(c0, w)), max(0, min(c1, w)))
    if box[1] <= box[0] or box[3] <= box[2]:
        raise ValueError(
            f"region rows {r0}..{r1}, cols {c0}..{c1} has no pixel inside the image "
            f"({h} x {w}); rows and cols are (start, end) with start < end"
        )
    return box


def _valid_window(
    store: ProjectStore, name: str, index: int | None, window: Box | None, shape: tuple[int, ...]
) -> np.ndarray:
    """The valid-pixel mask of one slice/window, reading only that part."""
    valid = store.valid_array(name)
    sel = (*(() if index is None else (index,)), *_window_slices(window))
    if valid is not None:
        return np.asarray(valid[sel])
    return np.ones(shape, dtype=bool)


def _window_slices(window: Box | None) -> tuple[slice, slice]:
    if window is None:
        return slice(None), slice(None)
    r0, r1, c0, c1 = window
    return slice(r0, r1), slice(c0, c1)


def normalized_window(
    store: ProjectStore,
    name: str,
    norm: Normalization,
    *,
    index: int | None = None,
    window: Box | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The model's bands of image ``name`` normalized for ``norm``, and its valid-pixel mask.

    Only the bands of ``norm`` are read (picked by name), and only slice ``index`` of a stack
    and the ``window`` ``(row0, row1, col0, col1)`` (already inside the image) when given.

    Returns
    -------
    x, valid
        ``C, H, W`` float32 and ``H, W`` bool.

    Raises
    ------
    IncompatibleBandsError
        The image lacks one of the model's bands.
    StackIndexError
        A stack without ``index``, an index outside it, or an index on a 2-D image.
    """
    info = store.image_info(name)
    idx = norm.band_indices(info.band_names, what=f"image {name!r}")
    index = check_index(info, index)
    if stack_depth(info) and index is None:
        raise StackIndexError(
            f"image {name!r} is a {info.axes} stack of {stack_depth(info)} slices: read one "
            f"slice at a time (index 0..{stack_depth(info) - 1})"
        )
    arr = store.image(name)
    spatial = (*(() if index is None else (index,)), *_window_slices(window))
    if idx == list(range(arr.shape[0])):
        data = np.asarray(arr[(slice(None), *spatial)])
    elif idx == list(range(idx[0], idx[-1] + 1)):
        data = np.asarray(arr[(slice(idx[0], idx[-1] + 1), *spatial)])
    else:
        data = np.asarray(arr.oindex[(np.asarray(idx), *spatial)])
    valid = _valid_window(store, name, index, window, data.shape[1:])
    return norm.apply(data, valid), valid


# ------------------------------------------------------------------------------ training
def training_images(
    store: ProjectStore, names: Sequence[str], norm: Normalization, machine_weight: float
) -> list[LabeledImage]:
    """The labeled images among ``names`` ready for training.

    A 2-D image with labels is one :class:`LabeledImage`; a stack gives one per slice holding a
    label (named by :func:`slice_name`, with that slice's provenance), unlabeled slices skipped.

    A plane larger than :data:`~napari_hitl.core.label_windows.WINDOWED_MIN_PIXELS` is never
    read whole: its labels are scanned tile by tile and only windows around them (with the
    context training needs, see :func:`~napari_hitl.core.label_windows.label_windows`) are
    read, each one a :class:`LabeledImage` with the plane's name.
    """
    from napari_hitl.core import label_windows as lw

    values = [c.value for c in store.classes]
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
                windows = lw.label_windows(labels_arr, k)
            else:
                windows = [(0, h, 0, w)] if np.asarray(labels_arr[lead]).any() else []
            for box in windows:
                whole = box == (0, h, 0, w)
                sel = (*lead, *_window_slices(box))
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
    the images when ``None``). A new classifier is normalized on those bands only.

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
    previous = None if fresh else load_state(store)
    if previous is not None and (
        previous.classifier.kind != config.model
        or previous.classifier.class_values != [c.value for c in classes]
        or previous.classifier.normalization.band_names != norm.band_names
    ):
        previous = None  # another model, other classes or other bands: start afresh
    if previous is not None:
        return previous.classifier, previous.iteration + 1
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

    Stacks train on their labeled slices; ``config.bands`` picks the bands the model uses. After
    saving, the Train is recorded in the store's history (effort so far, held-out accuracy; see
    :mod:`napari_hitl.core.history`).

    Raises
    ------
    TrainingDataError
        No labels, one class only, or no classes defined.
    IncompatibleBandsError
        Images with different bands, or lacking one of ``config.bands``.
    """
    config = config or TrainConfig()
    names = list(images) if images is not None else store.image_names()
    clf, iteration = classifier_for_training(store, config, names, fresh)
    data = training_images(store, names, clf.normalization, config.machine_weight)
    if not data:
        raise TrainingDataError("there are no labels yet: paint a few pixels of each class first")
    if not any((im.target >= 0).any() for im in data):
        raise TrainingDataError(
            "every labeled pixel is invalid (NaN, inf or nodata in at least one of the model's "
            f"bands: {', '.join(clf.normalization.band_names)}); leave out the band that is "
            "empty there (napari-hitl train --bands, or Model bands in the widget) or fix the image"
        )
    report = yield from clf.fit(data, config, cancel)
    state = save_latest(store, clf, iteration, config.to_json())
    store.append_history(train_record(store, report, iteration, clf.kind))
    return report, state


def save_latest(
    store: ProjectStore, clf: Classifier, iteration: int, train_config: dict[str, Any]
) -> LoopState:
    """Save ``clf`` as the project's ``latest`` model of ``iteration``, signed by its hash."""
    blob, _ = clf.state()
    model_hash = _hash(blob)
    save_checkpoint(
        store,
        LATEST,
        clf,
        {"iteration": iteration, "model_hash": model_hash, "train_config": train_config},
    )
    return LoopState(clf, iteration, model_hash)


# ---------------------------------------------------------------------------- prediction
def context_window(
    clf: Classifier, box: Box, shape: tuple[int, int]
) -> tuple[Box, tuple[slice, slice]]:
    """The window to predict for ``box`` of an image of ``shape``, and ``box`` inside it.

    The window starts on a multiple of the network's alignment, so that its pooling grid is the
    one of a whole-image prediction, and carries ``halo`` pixels of real context on every side:
    the box's pixels then equal those of a whole-image prediction.
    """
    r0, r1, c0, c1 = box
    h, w = shape
    halo = int(getattr(clf, "halo", 0))
    align = clf.align
    y0, x0 = max(r0 - halo, 0) // align * align, max(c0 - halo, 0) // align * align
    window = (y0, min(r1 + halo, h), x0, min(c1 + halo, w))
    return window, (slice(r0 - y0, r1 - y0), slice(c0 - x0, c1 - x0))


def _predict_plane(
    clf: Classifier,
    store: ProjectStore,
    name: str,
    index: int | None,
    box: Box | None,
    tile: int | str | None,
    cancel: CancelToken | None,
) -> Generator[Progress, None, Prediction]:
    """Predict one 2-D plane (an image or one slice), all of it or only ``box`` (full size)."""
    norm = clf.normalization
    if box is None:
        x, valid = normalized_window(store, name, norm, index=index)
        return (yield from predict_normalized(clf, x, valid, tile, cancel))
    h, w = store.image_info(name).spatial_shape[-2:]
    window, inner = context_window(clf, box, (h, w))
    x, valid = normalized_window(store, name, norm, index=index, window=window)
    part = yield from predict_normalized(clf, x, valid, tile, cancel)
    out = Prediction.empty(part.probabilities.shape[0], (h, w))
    out.paste(part.crop(*inner), box)
    return out


def prediction_arrays(pred: Prediction) -> dict[str, np.ndarray]:
    """The arrays a prediction is stored as, by key (:data:`PREDICTION_KEYS`)."""
    return {
        "prediction": pred.labels,
        "confidence": pred.confidence,
        "margin": pred.margin,
        "entropy": pred.entropy,
        "probabilities": pred.probabilities,
    }


def predict_project_image(
    store: ProjectStore,
    name: str,
    state: LoopState | None = None,
    write: bool = True,
    tile: int | str | None = "auto",
    cancel: CancelToken | None = None,
    *,
    index: int | None = None,
    region: Sequence[int] | None = None,
) -> Generator[Progress, None, Prediction]:
    """Predict image ``name`` with the project's model; store the results as signed arrays.

    Parameters
    ----------
    store
        The project (the results are written when it is writable and ``write``).
    name
        The image.
    state
        The model (default: the stored ``latest``).
    write
        Store the prediction, confidence, margin, entropy and probabilities.
    tile
        Tile edge of the inference, ``None`` for one piece, ``"auto"`` for the model's.
    cancel
        Checked between tiles (and slices).
    index
        For a stack: predict this slice only (``None``: every slice). Must be ``None`` for a 2-D
        image.
    region
        ``(row0, row1, col0, col1)`` in pixels: predict only this box (with the context the
        model needs); everything outside it is 0 in the results.

    Returns
    -------
    Prediction
        2-D (``H, W``; probabilities ``K, H, W``) for a 2-D image or one slice; for a whole
        stack the arrays have the stack axis (``Z, H, W``; probabilities ``K, Z, H, W``).

    Raises
    ------
    TrainingDataError
        No model yet.
    IncompatibleBandsError
        The image lacks one of the model's bands.
    StackIndexError
        ``index`` on a 2-D image or outside the stack.
    """
    state = state or load_state(store)
    if state is None:
        raise TrainingDataError("no model yet: train first")
    clf = state.classifier
    info = store.image_info(name)
    index = check_index(info, index)
    clf.normalization.band_indices(info.band_names, what=f"image {name!r}")
    box = None if region is None else clip_region(region, info.spatial_shape[-2:])
    depth = stack_depth(info)
    sig_base = store.signature(name, model_hash=state.model_hash, iteration=state.iteration)
    region_sig = {} if box is None else {"region": list(box)}
    if not depth or index is not None:
        pred = yield from _predict_plane(clf, store, name, index, box, tile, cancel)
        if write and store.writable:
            if not depth:
                for key, arr in prediction_arrays(pred).items():
                    store.write_derived(name, key, arr, {**sig_base, **region_sig})
            else:
                _write_slice(store, name, pred, index, sig_base, box, info)  # type: ignore[arg-type]
        return pred

    # the whole stack, slice after slice, into preallocated stack-shaped arrays
    h, w = info.spatial_shape[-2:]
    k = len(clf.class_values)
    out = Prediction(
        np.zeros((depth, h, w), LABEL_DTYPE),
        np.zeros((k, depth, h, w), np.float32),
        np.zeros((depth, h, w), np.float32),
        np.zeros((depth, h, w), np.float32),
        np.zeros((depth, h, w), np.float32),
    )
    axis = info.axes[1].lower()
    for z in range(depth):
        if cancel is not None:
            cancel.raise_if_cancelled()
        plane = yield from relay(
            _predict_plane(clf, store, name, z, box, tile, cancel),
            z,
            depth,
            f"{axis}={z} ({z + 1}/{depth})",
        )
        out.labels[z] = plane.labels
        out.probabilities[:, z] = plane.probabilities
        out.confidence[z] = plane.confidence
        out.margin[z] = plane.margin
        out.entropy[z] = plane.entropy
        del plane
    if write and store.writable:
        sig = {**sig_base, "slices": list(range(depth))}
        if box is not None:
            sig["regions"] = {str(z): list(box) for z in range(depth)}
        for key, arr in prediction_arrays(out).items():
            store.write_derived(name, key, arr, sig)
    return out


def stack_shapes(info: ImageInfo, k: int) -> dict[str, tuple[int, ...]]:
    """Shapes of a stack's stored prediction arrays for ``k`` classes, by key."""
    spatial = tuple(int(v) for v in info.spatial_shape)
    return {key: ((k, *spatial) if key == "probabilities" else spatial) for key in PREDICTION_KEYS}


def _is_current(sig: dict[str, Any], base: dict[str, Any]) -> bool:
    return all(sig.get(k) == v for k, v in base.items())


def _write_slice(
    store: ProjectStore,
    name: str,
    pred: Prediction,
    index: int,
    sig_base: dict[str, Any],
    box: Box | None,
    info: ImageInfo,
) -> None:
    """Write one slice's prediction into the stack's arrays (reset first if another model's)."""
    hitl = store.derived_group(name)
    arrays = prediction_arrays(pred)
    shapes = stack_shapes(info, pred.probabilities.shape[0])
    present = set(hitl.array_keys())
    sigs = {
        key: dict(hitl[key].attrs).get(ATTR, {}).get("signature", {})  # type: ignore[union-attr]
        for key in PREDICTION_KEYS
        if key in present
    }
    current = all(
        key in sigs
        and _is_current(sigs[key], sig_base)
        and tuple(hitl[key].shape) == shapes[key]  # type: ignore[union-attr]
        and hitl[key].dtype == arrays[key].dtype  # type: ignore[union-attr]
        for key in PREDICTION_KEYS
    )
    slices: set[int] = set()
    regions: dict[str, list[int]] = {}
    if current:
        first = sigs["prediction"]
        slices = {int(s) for s in first.get("slices", [])}
        regions = dict(first.get("regions", {}))
    regions.pop(str(index), None)
    if box is not None:
        regions[str(index)] = list(box)
    for key, data in arrays.items():
        if current:
            arr = hitl[key]
        else:  # empty (all-zero) arrays cost no memory and no disk: zero chunks are not written
            shape = shapes[key]
            arr = hitl.create_array(
                key,
                shape=shape,
                dtype=data.dtype,
                chunks=(*(1,) * (len(shape) - 2), min(512, shape[-2]), min(512, shape[-1])),
                fill_value=0,
                overwrite=True,
                attributes={ATTR: {"signature": {**sig_base, "slices": []}}},
            )
        if key == "probabilities":
            arr[:, index] = data  # type: ignore[index]
        else:
            arr[index] = data  # type: ignore[index]
        # the slice is listed only once its data are written
        sig = {**sig_base, "slices": sorted(slices | {index})}
        if regions:
            sig["regions"] = regions
        arr.attrs.update({ATTR: {"signature": sig}})


def _current_derived(
    store: ProjectStore, name: str, key: str, expected: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """A derived zarr array (not read) and its signature, refused like ``read_derived``."""
    arr = store.derived_array(name, key, expected, action="predict")
    return arr, store.derived_signature(name, key) or {}


def current_prediction(
    store: ProjectStore, name: str, state: LoopState, *, index: int | None = None
) -> Prediction | None:
    """The stored whole-plane prediction of a 2-D image (or of slice ``index`` of a stack) made
    by ``state``'s model, or ``None`` when it is missing, stale or limited to a region."""
    expected = {"model_hash": state.model_hash, "iteration": state.iteration}
    try:
        found = {k: _current_derived(store, name, k, expected) for k in PREDICTION_KEYS}
    except (StoreError, StaleDataError):
        return None
    sigs = [sig for _, sig in found.values()]
    if index is None:
        if any("region" in sig or "slices" in sig for sig in sigs):
            return None
        arrays = {k: np.asarray(arr[...]) for k, (arr, _) in found.items()}
    else:
        if any(
            index not in sig.get("slices", []) or str(index) in sig.get("regions", {})
            for sig in sigs
        ):
            return None
        arrays = {
            k: np.asarray(arr[:, index] if k == "probabilities" else arr[index])
            for k, (arr, _) in found.items()
        }
    return Prediction(
        arrays["prediction"],
        arrays["probabilities"],
        arrays["confidence"],
        arrays["margin"],
        arrays["entropy"],
    )


def stored_prediction(
    store: ProjectStore,
    name: str,
    state: LoopState | None = None,
    *,
    index: int | None = None,
) -> dict[str, Any]:
    """The stored prediction and confidence of ``name``, refused if made by another model.

    Parameters
    ----------
    store, name
        The project and image.
    state
        The current model (default: the stored ``latest``).
    index
        For a stack: one slice (2-D arrays). ``None`` returns the whole stack's arrays and
        ``"slices"``, the slices the current model has predicted.

    Raises
    ------
    StoreError
        Nothing predicted yet.
    StaleDataError
        Predicted by another model, the image changed, or (stacks) the slice was not predicted
        by the current model.
    """
    state = state or load_state(store)
    if state is None:
        raise TrainingDataError("no model yet: train first")
    expected = {"model_hash": state.model_hash, "iteration": state.iteration}
    info = store.image_info(name)
    index = check_index(info, index)
    if not stack_depth(info):
        return {k: store.read_derived(name, k, expected) for k in ("prediction", "confidence")}
    found = {k: _current_derived(store, name, k, expected) for k in ("prediction", "confidence")}
    slices = sorted(
        set.intersection(*({int(s) for s in sig.get("slices", [])} for _, sig in found.values()))
    )
    axis = info.axes[1].lower()
    hint = f"napari-hitl predict STORE --image {name} --slice N"
    if index is None:
        if not slices:
            raise StaleDataError(
                f"no slice of image {name!r} is predicted by the current model (iteration "
                f"{state.iteration}); predict it first ({hint})"
            )
        out: dict[str, Any] = {k: np.asarray(arr[...]) for k, (arr, _) in found.items()}
        out["slices"] = slices
        return out
    if index not in slices:
        raise StaleDataError(
            f"slice {axis}={index} of image {name!r} is out of date: the current model "
            f"(iteration {state.iteration}) has predicted slices {slices or 'none'} of it; "
            f"predict that slice first ({hint.replace('N', str(index))})"
        )
    return {k: np.asarray(arr[index]) for k, (arr, _) in found.items()}


def push_project_image(
    store: ProjectStore,
    name: str,
    threshold: float = DEFAULT_THRESHOLD,
    region: np.ndarray | tuple[int, int, int, int] | None = None,
    state: LoopState | None = None,
    margin: int = DEFAULT_MARGIN,
    *,
    index: int | None = None,
) -> PushRecord:
    """Accept the current model's stored prediction of ``name`` at ``threshold`` into its labels.

    Only unlabeled pixels change, and only those ``margin`` px or more inside a confident region
    of one class (see :func:`napari_hitl.core.feedback.accept_mask`); the push can be undone with
    :func:`napari_hitl.core.feedback.store_undo`.

    Parameters
    ----------
    store, name
        The project and image.
    threshold
        Minimum confidence.
    region
        A box ``(row0, row1, col0, col1)`` or a boolean mask (``H, W``, or ``Z, H, W`` for a
        stack) limiting the push.
    state
        The current model (default: the stored ``latest``).
    margin
        Pixels kept away from predicted class boundaries.
    index
        For a stack: push this slice only; ``None`` pushes every slice the current model has
        predicted (one push, undone at once). Must be ``None`` for a 2-D image.

    Raises
    ------
    TrainingDataError
        No model yet.
    StaleDataError
        The prediction (or the slice's) was made by another model.
    """
    state = state or load_state(store)
    if state is None:
        raise TrainingDataError("no model yet: train first")
    info = store.image_info(name)
    index = check_index(info, index)
    stored = stored_prediction(store, name, state, index=index)
    if not stack_depth(info):
        accept = accept_mask(
            stored["confidence"],
            threshold,
            region,
            store.valid_mask(name),
            predicted=stored["prediction"],
            margin=margin,
        )
        return store_push(store, name, stored["prediction"], accept, state.iteration)
    valid = store.valid_mask(name)
    accept = np.zeros(info.spatial_shape, bool)
    if index is not None:
        predicted = np.zeros(info.spatial_shape, LABEL_DTYPE)
        predicted[index] = stored["prediction"]
        planes = [(index, stored["prediction"], stored["confidence"])]
    else:
        predicted = stored["prediction"]
        planes = [(z, predicted[z], stored["confidence"][z]) for z in stored["slices"]]
    for z, pred_z, conf_z in planes:
        region_z = region
        if isinstance(region, np.ndarray) and region.ndim == 3:
            region_z = region[z]
        accept[z] = accept_mask(
            conf_z, threshold, region_z, valid[z], predicted=pred_z, margin=margin
        )
    return store_push(store, name, predicted, accept, state.iteration)
