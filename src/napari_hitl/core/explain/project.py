"""Explanations and attention guidance over a project store (what the CLI and the widget call).

- :func:`explain_project_image`: Grad-CAM and per-band attribution of the project's model for a
  class over a region of one image (or one slice of a stack), reading only the window the
  region needs (its bounding box grown by two halos), returned as full-size arrays.
- :class:`ClickSet`: one image's clicks (class, region, positive and negative points), kept in
  the store's settings so that a confirm / next / fine-tune round survives a restart.
- :func:`guide_project`: turn click sets into
  :class:`~napari_hitl.core.explain.steering.GuideTarget`
  (negative clicks become the superpixels of the current Grad-CAM map), fine-tune a copy of the
  model with :func:`~napari_hitl.core.explain.steering.guide_job`, keep the previous model as the
  checkpoint ``before-guidance`` and save the guided one as ``latest`` (next iteration).
- :func:`revert_guidance`: put ``before-guidance`` back as ``latest``.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_hitl.core.errors import StoreError
from napari_hitl.core.explain.attribution import BandAttribution, band_attribution_job
from napari_hitl.core.explain.gradcam import (
    ExplainError,
    GradCam,
    Region,
    bounding_box,
    grad_cam_job,
    grow_box,
)
from napari_hitl.core.explain.steering import (
    GuideTarget,
    SteerConfig,
    SteerReport,
    guide_job,
    negative_region,
)
from napari_hitl.core.learning.net import NetClassifier
from napari_hitl.core.learning.registry import list_checkpoints, save_checkpoint
from napari_hitl.core.loop import (
    LATEST,
    LoopState,
    check_index,
    context_window,
    current_prediction,
    load_state,
    normalized_window,
    predict_project_image,
    require_state,
    save_latest,
    stack_depth,
    training_images,
)
from napari_hitl.core.progress import CancelToken, Progress, relay
from napari_hitl.core.store import ProjectStore

BEFORE_GUIDANCE = "before-guidance"
CLICKS_SETTING = "guidance_clicks"
MAX_GUIDE_WINDOW = 768  # edge of the window a guided image is cropped to around its clicks


# ------------------------------------------------------------------------------ helpers
def network_state(store: ProjectStore) -> LoopState:
    """The project's model, refused unless it is a trained network.

    Raises
    ------
    TrainingDataError
        No model yet.
    ExplainError
        The model is the random forest (no gradients).
    """
    state = require_state(store)
    if not isinstance(state.classifier, NetClassifier):
        raise ExplainError(
            f"the project's model is {state.classifier.kind!r}, which has no gradients: "
            "explanations and guidance need a unet or patch-cnn (train --model unet)"
        )
    return state


def class_position(clf: Any, ref: str | int) -> int:
    """Index of a class among the model's, given its name or label value.

    Raises
    ------
    ExplainError
        No such class (the message lists them).
    """
    names = [str(n) for n in clf.class_names]
    values = [int(v) for v in clf.class_values]
    text = str(ref).strip()
    if text in names:
        return names.index(text)
    lowered = [n.lower() for n in names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    if text.lstrip("-").isdigit() and int(text) in values:
        return values.index(int(text))
    listing = ", ".join(f"{v} {n}" for v, n in zip(values, names, strict=True))
    raise ExplainError(f"the model has no class {ref!r}; its classes: {listing}")


def _plane_shape(store: ProjectStore, name: str, index: int | None) -> tuple[int, int]:
    info = store.image_info(name)
    check_index(info, index)
    if stack_depth(info) and index is None:
        raise ExplainError(
            f"image {name!r} is a stack of {stack_depth(info)} slices: choose one (--index)"
        )
    h, w = info.spatial_shape[-2:]
    return int(h), int(w)


def _aligned_window(box: tuple[int, int, int, int], align: int) -> tuple[int, int, int, int]:
    r0, r1, c0, c1 = box
    return r0 // align * align, r1, c0 // align * align, c1


def _predicted_labels(
    store: ProjectStore, name: str, state: LoopState, index: int | None, cancel: CancelToken | None
) -> Generator[Progress, None, np.ndarray]:
    pred = current_prediction(store, name, state, index=index)
    if pred is None:
        pred = yield from predict_project_image(
            store, name, state, write=False, cancel=cancel, index=index
        )
    return pred.labels


# ---------------------------------------------------------------------------- explain
@dataclass
class Explanation:
    """Grad-CAM (and optionally per-band attribution) of one image plane, full size.

    Attributes
    ----------
    image, index
        The image and the slice (``None`` for a 2-D image).
    class_value, class_name
        The explained class.
    region
        The region explained, and ``mask`` its pixels.
    cam
        :class:`~napari_hitl.core.explain.gradcam.GradCam` whose ``map`` and ``extent`` are in the
        plane's coordinates.
    attribution
        :class:`~napari_hitl.core.explain.gradcam.BandAttribution` with plane-sized ``maps``, or
        ``None``.
    window
        The box read from the store.
    """

    image: str
    index: int | None
    class_value: int
    class_name: str
    region: Region
    mask: np.ndarray
    cam: GradCam
    attribution: BandAttribution | None
    window: tuple[int, int, int, int]


def explain_project_image(
    store: ProjectStore,
    name: str,
    class_ref: str | int,
    *,
    region: Region | None = None,
    mask: np.ndarray | None = None,
    layer: str | None = None,
    index: int | None = None,
    attribution: str | None = "integrated",
    steps: int = 8,
    tile: int | None = 512,
    state: LoopState | None = None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, Explanation]:
    """Explain the project's model on one image plane; a progress generator.

    Parameters
    ----------
    store, name
        The project and image.
    class_ref
        The class, by name or label value.
    region
        The pixels explained (default the whole plane). A segment is taken from the model's
        current prediction (made, not stored, when there is none).
    mask
        Instead of ``region``: an ``H, W`` bool mask.
    layer
        Grad-CAM layer (default per model).
    index
        The slice of a stack.
    attribution
        A method of :data:`~napari_hitl.core.explain.gradcam.ATTRIBUTION_METHODS`, or ``None``.
    steps
        Integrated-gradients steps.
    tile
        Tile edge.
    state
        The model (default: the stored ``latest``).
    cancel
        Cancel token.

    Raises
    ------
    TrainingDataError, ExplainError, StackIndexError
        No model, the random forest, a bad class/region/layer, a stack without index.
    """
    state = state or network_state(store)
    clf = state.classifier
    if not isinstance(clf, NetClassifier):
        raise ExplainError("explanations need a unet or patch-cnn model")
    k = class_position(clf, class_ref)
    shape = _plane_shape(store, name, index)
    region = region or Region()
    if mask is None:
        labels = None
        if region.kind == "segment":
            labels = yield from _predicted_labels(store, name, state, index, cancel)
        mask = region.mask(shape, labels, clf.class_values[k])
    elif mask.shape != shape:
        raise ExplainError(f"mask shape {mask.shape} differs from the image's {shape}")
    # the region's logits need one halo of input, the map on that halo one more
    window, _inner = context_window(clf, grow_box(bounding_box(mask), clf.halo, shape), shape)
    r0, r1, c0, c1 = window
    x, valid = normalized_window(store, name, clf.normalization, index=index, window=window)
    sub = mask[r0:r1, c0:c1]
    parts = 2 if attribution else 1
    cam = yield from relay(
        grad_cam_job(clf, x, k, sub, layer=layer, tile=tile, cancel=cancel), 0, parts, ""
    )
    full = np.zeros(shape, np.float32)
    full[r0:r1, c0:c1] = cam.map
    e = cam.extent
    cam.map = full
    cam.extent = (e[0] + r0, e[1] + r0, e[2] + c0, e[3] + c0)
    attr = None
    if attribution:
        attr = yield from relay(
            band_attribution_job(
                clf, x, k, sub, method=attribution, steps=steps, valid=valid, tile=tile,
                cancel=cancel,
            ),
            1,
            2,
            "",
        )  # fmt: skip
        maps = np.zeros((attr.maps.shape[0], *shape), np.float32)
        maps[:, r0:r1, c0:c1] = attr.maps
        attr.maps = maps
    return Explanation(
        name, index, clf.class_values[k], clf.class_names[k], region, mask, cam, attr, window
    )


# ------------------------------------------------------------------------------ clicks
@dataclass
class ClickSet:
    """One image's guidance clicks.

    Attributes
    ----------
    image, index
        The image (and slice).
    class_ref
        The guided class (name or value).
    region
        The region whose score Grad-CAM explains (text form, see :meth:`Region.parse`).
    positive, negative
        ``(row, col)`` clicks: where to look, and inside the regions to ignore.
    confirmed
        The user confirmed this image (the paper's CONFIRM); fine-tuning uses confirmed sets.
    """

    image: str
    class_ref: str
    index: int | None = None
    region: str = "image"
    positive: list[tuple[int, int]] = field(default_factory=list)
    negative: list[tuple[int, int]] = field(default_factory=list)
    confirmed: bool = False

    @property
    def key(self) -> str:
        """``image`` or ``image[index]``."""
        return self.image if self.index is None else f"{self.image}[{self.index}]"

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "image": self.image,
            "class": self.class_ref,
            "index": self.index,
            "region": self.region,
            "positive": [list(map(int, p)) for p in self.positive],
            "negative": [list(map(int, p)) for p in self.negative],
            "confirmed": self.confirmed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClickSet:
        """Inverse of :meth:`to_json`."""
        return cls(
            str(data["image"]),
            str(data["class"]),
            None if data.get("index") is None else int(data["index"]),
            str(data.get("region", "image")),
            [(int(r), int(c)) for r, c in data.get("positive", [])],
            [(int(r), int(c)) for r, c in data.get("negative", [])],
            bool(data.get("confirmed", False)),
        )


def load_clicks(store: ProjectStore) -> list[ClickSet]:
    """The click sets saved in the store (empty when none)."""
    return [ClickSet.from_json(d) for d in store.setting(CLICKS_SETTING, []) or []]


def save_clicks(store: ProjectStore, sets: Sequence[ClickSet]) -> None:
    """Save click sets in the store (one per image key; empty sets are dropped)."""
    kept = {s.key: s for s in sets if s.positive or s.negative}
    store.set_setting(CLICKS_SETTING, [s.to_json() for s in kept.values()])


# ---------------------------------------------------------------------------- guidance
def guide_window(
    mask: np.ndarray, clicks: Sequence[tuple[int, int]], halo: int, align: int
) -> tuple[int, int, int, int]:
    """The window a guided plane is cropped to: the region and clicks plus two halos, at most
    :data:`MAX_GUIDE_WINDOW` on a side (then centred on the clicks)."""
    shape = mask.shape
    box = bounding_box(mask)
    if clicks:
        rows = [p[0] for p in clicks]
        cols = [p[1] for p in clicks]
        cbox = (min(rows), max(rows) + 1, min(cols), max(cols) + 1)
        box = (
            min(box[0], cbox[0]),
            max(box[1], cbox[1]),
            min(box[2], cbox[2]),
            max(box[3], cbox[3]),
        )
    r0, r1, c0, c1 = grow_box(box, 2 * halo, shape)
    if clicks and (r1 - r0 > MAX_GUIDE_WINDOW or c1 - c0 > MAX_GUIDE_WINDOW):
        cy, cx = float(np.mean(rows)), float(np.mean(cols))
        half = MAX_GUIDE_WINDOW // 2
        r0 = int(np.clip(cy - half, 0, max(shape[0] - MAX_GUIDE_WINDOW, 0)))
        c0 = int(np.clip(cx - half, 0, max(shape[1] - MAX_GUIDE_WINDOW, 0)))
        r1, c1 = min(r0 + MAX_GUIDE_WINDOW, shape[0]), min(c0 + MAX_GUIDE_WINDOW, shape[1])
    return _aligned_window((r0, r1, c0, c1), align)


@dataclass
class PreparedGuidance:
    """The targets built from click sets, with the negative masks shown to the user."""

    targets: list[GuideTarget]
    windows: list[tuple[int, int, int, int]]
    negative_masks: list[np.ndarray]  # plane-sized


def prepare_targets(
    store: ProjectStore,
    sets: Sequence[ClickSet],
    *,
    state: LoopState | None = None,
    superpixel: str = "felzenszwalb",
    layer: str | None = None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, PreparedGuidance]:
    """Guide targets from click sets under the current model; a generator.

    Each negative click becomes the superpixel of the current Grad-CAM map under it
    (:func:`~napari_hitl.core.explain.steering.negative_region`).
    """
    state = state or network_state(store)
    clf = state.classifier
    assert isinstance(clf, NetClassifier)
    targets, windows, negatives = [], [], []
    for i, s in enumerate(sets):
        k = class_position(clf, s.class_ref)
        shape = _plane_shape(store, s.image, s.index)
        region = Region.parse(s.region)
        labels = None
        if region.kind == "segment":
            labels = yield from _predicted_labels(store, s.image, state, s.index, cancel)
        mask = region.mask(shape, labels, clf.class_values[k])
        clicks = [*s.positive, *s.negative]
        window = guide_window(mask, clicks, clf.halo, clf.align)
        r0, r1, c0, c1 = window
        x, _valid = normalized_window(
            store, s.image, clf.normalization, index=s.index, window=window
        )
        sub = mask[r0:r1, c0:c1]
        if not sub.any():
            raise ExplainError(f"{s.key}: the region lies outside the guided window")
        neg = np.zeros(sub.shape, bool)
        if s.negative:
            cam = yield from relay(grad_cam_job(clf, x, k, sub, layer=layer), i, len(sets), s.key)
            e0, e1, e2, e3 = cam.extent
            for r, c in s.negative:
                if not (e0 <= r - r0 < e1 and e2 <= c - c0 < e3):
                    raise ExplainError(
                        f"{s.key}: negative click ({r}, {c}) lies where the region's Grad-CAM is "
                        f"not defined (rows {e0 + r0}:{e1 + r0}, cols {e2 + c0}:{e3 + c0}); the "
                        "network cannot look there for this region, so there is nothing to ignore"
                    )
                neg |= negative_region(cam.map, (r - r0, c - c0), superpixel)
        positive = [(r - r0, c - c0) for r, c in s.positive]
        outside = [p for p in positive if not (0 <= p[0] < r1 - r0 and 0 <= p[1] < c1 - c0)]
        if outside:
            raise ExplainError(
                f"{s.key}: positive clicks too far from the others; guide them apart"
            )
        targets.append(GuideTarget(x, k, sub, positive, neg if neg.any() else None, s.key))
        windows.append(window)
        full = np.zeros(shape, bool)
        full[r0:r1, c0:c1] = neg
        negatives.append(full)
        yield Progress(i + 1, len(sets), f"prepared {s.key}")
    return PreparedGuidance(targets, windows, negatives)


def guide_project(
    store: ProjectStore,
    sets: Sequence[ClickSet],
    config: SteerConfig | None = None,
    *,
    superpixel: str = "felzenszwalb",
    machine_weight: float = 0.5,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, tuple[SteerReport, LoopState]]:
    """Fine-tune the project's model on click sets; save it as ``latest`` (next iteration).

    The previous model is kept as the checkpoint :data:`BEFORE_GUIDANCE` (see
    :func:`revert_guidance`). ``loss_c`` trains on every labeled image of the project.

    Raises
    ------
    TrainingDataError, ExplainError
        No model, the random forest, no clicks, bad clicks.
    """
    config = config or SteerConfig()
    if not sets:
        raise ExplainError("no clicks to guide with: click on an image first")
    store.require_writable()
    state = network_state(store)
    clf = state.classifier
    assert isinstance(clf, NetClassifier)
    prepared = yield from relay(
        prepare_targets(
            store, sets, state=state, superpixel=superpixel, layer=config.layer, cancel=cancel
        ),
        0,
        2,
        "",
    )
    bank = clf.spec.bank  # the stored U-Net's filter bank needs more context around labels
    train = training_images(store, store.image_names(), clf.normalization, machine_weight, bank)
    guided, report = yield from relay(
        guide_job(clf, prepared.targets, train, config, cancel), 1, 2, ""
    )
    save_checkpoint(
        store,
        BEFORE_GUIDANCE,
        clf,
        {"iteration": state.iteration, "model_hash": state.model_hash, **_train_config(store)},
    )
    new_state = save_latest(
        store,
        guided,
        state.iteration + 1,
        {"guidance": report.config, "images": report.names},
    )
    return report, new_state


def _train_config(store: ProjectStore, name: str = LATEST) -> dict[str, Any]:
    return {"train_config": store.model_config(name).get("train_config", {})}


def revert_guidance(store: ProjectStore) -> LoopState:
    """Put the model saved before the last guidance back as ``latest``.

    Its predictions made before the guidance become current again (same model hash).

    Raises
    ------
    StoreError
        There is no guided model to revert.
    """
    store.require_writable()
    if BEFORE_GUIDANCE not in list_checkpoints(store):
        raise StoreError("there is no guidance to revert (no 'before-guidance' model)")
    previous = load_state(store, BEFORE_GUIDANCE)
    assert previous is not None
    save_checkpoint(
        store,
        LATEST,
        previous.classifier,
        {
            "iteration": previous.iteration,
            "model_hash": previous.model_hash,
            **_train_config(store, BEFORE_GUIDANCE),
        },
    )
    store.remove_model(BEFORE_GUIDANCE)
    return previous
