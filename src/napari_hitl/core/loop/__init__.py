"""The learning loop over a project store: train on its labels, predict its images, push, undo.

This is what the CLI (``napari-hitl train/predict/push/undo``) and the napari widgets call. The
trained model is kept in the store as the checkpoint ``latest`` with its configuration (bands,
normalization, classes, iteration); predictions are stored as derived arrays signed with the
model's hash, so pushing from a prediction made by an older model is refused.

Bands
    A model uses the bands named in its normalization (``TrainConfig.bands``, default every band
    of the images). Every read of an image for a model picks those bands by name, so an image may
    hold other bands as well; an image lacking one of them is refused
    (:class:`~napari_hitl.core.learning.data.IncompatibleBandsError` naming the band).

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

from napari_hitl.core.loop.predict import (
    PREDICTION_KEYS,
    is_current,
    predict_plane,
    predict_project_image,
    prediction_arrays,
    stack_shapes,
    write_slice,
)
from napari_hitl.core.loop.push import (
    push_project_image,
)
from napari_hitl.core.loop.reading import (
    check_index,
    clip_region,
    context_window,
    normalized_window,
    slice_name,
    stack_depth,
    valid_window,
    window_slices,
)
from napari_hitl.core.loop.records import (
    current_derived,
    current_prediction,
    stored_prediction,
)
from napari_hitl.core.loop.state import (
    LATEST,
    LoopState,
    load_state,
    project_normalization,
    require_state,
    save_latest,
)
from napari_hitl.core.loop.train import (
    classifier_for_training,
    train_project,
    training_images,
)
from napari_hitl.core.tiling import Box

__all__ = [
    "LATEST",
    "PREDICTION_KEYS",
    "Box",
    "LoopState",
    "check_index",
    "classifier_for_training",
    "clip_region",
    "context_window",
    "current_derived",
    "current_prediction",
    "is_current",
    "load_state",
    "normalized_window",
    "predict_plane",
    "predict_project_image",
    "prediction_arrays",
    "project_normalization",
    "push_project_image",
    "require_state",
    "save_latest",
    "slice_name",
    "stack_depth",
    "stack_shapes",
    "stored_prediction",
    "train_project",
    "training_images",
    "valid_window",
    "window_slices",
    "write_slice",
]
