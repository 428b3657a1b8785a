"""Build, train and apply classifiers by model name; save and load them as checkpoints."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_hitl.core.classifier import NetClassifier
from napari_hitl.core.data import Normalization
from napari_hitl.core.errors import StoreError
from napari_hitl.core.forest import ForestClassifier
from napari_hitl.core.models import MODEL_NAMES
from napari_hitl.core.store import ProjectStore

Classifier = NetClassifier | ForestClassifier


def make_classifier(
    kind: str, normalization: Normalization, class_values: Sequence[int], class_names: Sequence[str]
) -> Classifier:
    """A fresh, untrained classifier of ``kind`` (one of :data:`MODEL_NAMES`)."""
    if kind == "rf":
        return ForestClassifier(normalization, class_values, class_names)
    if kind in MODEL_NAMES:
        return NetClassifier(kind, normalization, class_values, class_names)
    raise ValueError(f"unknown model {kind!r}; choose one of {', '.join(MODEL_NAMES)}")


def classifier_from_state(blob: bytes, config: dict[str, Any]) -> Classifier:
    """Rebuild a classifier saved with ``state()``."""
    if config.get("kind") == "rf":
        return ForestClassifier.from_state(blob, config)
    return NetClassifier.from_state(blob, config)


def save_checkpoint(
    store: ProjectStore, name: str, clf: Classifier, extra: dict[str, Any] | None = None
) -> None:
    """Save a trained classifier in the store under ``models/<name>`` (bytes + JSON config)."""
    store._require_writable()
    blob, config = clf.state()
    config = {**config, **(extra or {})}
    models = store._root.require_group("models")
    arr = models.create_array(
        name,
        shape=(len(blob),),
        dtype=np.uint8,
        chunks=(max(1, min(len(blob), 1 << 24)),),
        overwrite=True,
        attributes={"napari_hitl": {"config": json.loads(json.dumps(config))}},
    )
    arr[...] = np.frombuffer(blob, dtype=np.uint8)


def list_checkpoints(store: ProjectStore) -> list[str]:
    """Names of the checkpoints in the store."""
    if "models" not in store._root:
        return []
    return sorted(store._root["models"].array_keys())  # type: ignore[union-attr]


def load_checkpoint(store: ProjectStore, name: str) -> Classifier:
    """Load a checkpoint saved with :func:`save_checkpoint`.

    Raises
    ------
    StoreError
        No such checkpoint (the message lists the ones there are).
    """
    names = list_checkpoints(store)
    if name not in names:
        raise StoreError(
            f"{store.path} has no model {name!r}; models: {', '.join(names) or 'none'}"
        )
    arr = store._root["models"][name]  # type: ignore[index]
    config = dict(arr.attrs)["napari_hitl"]["config"]
    return classifier_from_state(np.asarray(arr[...]).tobytes(), config)
