"""Classifiers by model name: build one (:func:`make_classifier`), rebuild a saved one
(:func:`classifier_from_state`), and save and load checkpoints in a project store. Training
and prediction are the classifiers' own (:mod:`napari_hitl.core.learning.base`)."""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Sequence
from typing import Any

from napari_hitl.core.choices import AUTO_CANDIDATES, AUTO_MODEL, MODEL_NAMES
from napari_hitl.core.errors import StoreError, short_reason
from napari_hitl.core.learning.base import Classifier
from napari_hitl.core.learning.data import Normalization
from napari_hitl.core.learning.forest import ForestClassifier
from napari_hitl.core.learning.net import NetClassifier
from napari_hitl.core.store import ProjectStore

HASH_KEY = "blob_hash"  # config key of the checkpoint's bytes' model_hash, checked on load


def model_hash(blob: bytes) -> str:
    """The hash that identifies a model's bytes: BLAKE2b, 12-byte digest, as hex.

    Parameters
    ----------
    blob
        A classifier's ``state()`` bytes.

    Returns
    -------
    str
        24 hexadecimal digits.
    """
    return hashlib.blake2b(blob, digest_size=12).hexdigest()


def make_classifier(
    kind: str, normalization: Normalization, class_values: Sequence[int], class_names: Sequence[str]
) -> Classifier:
    """A fresh, untrained classifier of ``kind`` (one of :data:`MODEL_NAMES`, or an ensemble
    of them joined by ``+``, e.g. ``unet+rf``: :mod:`napari_hitl.core.learning.ensemble`)."""
    if "+" in kind:
        from napari_hitl.core.learning.ensemble import EnsembleClassifier, member_kinds

        names = member_kinds(kind)
        if len(names) < 2 or "+" in "".join(names) or len(set(names)) < len(names):
            raise ValueError(
                f"an ensemble joins two or more different models with '+', not {kind!r}"
            )
        return EnsembleClassifier(  # type: ignore[return-value]
            [make_classifier(k, normalization, class_values, class_names) for k in names]
        )
    if kind == "rf":
        return ForestClassifier(normalization, class_values, class_names)
    if kind in MODEL_NAMES:
        return NetClassifier(kind, normalization, class_values, class_names)
    if kind == AUTO_MODEL:
        raise ValueError(
            "'auto' is no model of its own: train or simulate with --model auto, and the first "
            "Train picks one of " + ", ".join(AUTO_CANDIDATES)
        )
    raise ValueError(f"unknown model {kind!r}; choose one of {', '.join(MODEL_NAMES)}")


def classifier_from_state(blob: bytes, config: dict[str, Any]) -> Classifier:
    """Rebuild a classifier saved with ``state()``."""
    if "+" in str(config.get("kind", "")):
        from napari_hitl.core.learning.ensemble import EnsembleClassifier

        return EnsembleClassifier.from_state(  # type: ignore[return-value]
            blob, config, classifier_from_state
        )
    if config.get("kind") == "rf":
        return ForestClassifier.from_state(blob, config)
    return NetClassifier.from_state(blob, config)


def save_checkpoint(
    store: ProjectStore, name: str, clf: Classifier, extra: dict[str, Any] | None = None
) -> None:
    """Save a trained classifier in the store under ``models/<name>`` (bytes + JSON config).

    The config records :func:`model_hash` of the bytes under :data:`HASH_KEY`;
    :func:`load_checkpoint` checks it before it reads anything.

    Parameters
    ----------
    store
        A writable project store.
    name
        The checkpoint's name (``latest``, ``before-guidance``…).
    clf
        The classifier; its ``state()`` is stored.
    extra
        More JSON keys for the config (iteration, model_hash, train_config…).
    """
    blob, config = clf.state()
    store.write_model(name, blob, {**config, **(extra or {}), HASH_KEY: model_hash(blob)})


def list_checkpoints(store: ProjectStore) -> list[str]:
    """Names of the checkpoints in the store."""
    return store.model_names()


def checkpoint_problem(store: ProjectStore, name: str) -> str | None:
    """Why checkpoint ``name`` cannot be loaded (one line), or ``None`` when it loads."""
    try:
        load_checkpoint(store, name)
    except StoreError as exc:
        return str(exc)
    return None


def remove_checkpoint(store: ProjectStore, name: str) -> None:
    """Delete checkpoint ``name`` (``napari-hitl check --repair`` removes damaged ones)."""
    store.remove_model(name)


def load_checkpoint(store: ProjectStore, name: str) -> Classifier:
    """Load a checkpoint saved with :func:`save_checkpoint`.

    The bytes are checked against the hash their config records before they are read;
    forests are read from plain arrays and networks with ``torch.load(weights_only=True)``, so
    a store from someone else cannot run code. A forest pickled by an older napari-hitl is
    refused, never unpickled. Checkpoints of older versions without a hash still load when they
    are networks.

    Parameters
    ----------
    store
        The project store.
    name
        The checkpoint's name.

    Returns
    -------
    Classifier
        The classifier that was saved.

    Raises
    ------
    StoreError
        No such checkpoint (the message lists the ones there are); or the checkpoint is
        damaged (bytes that do not match their hash, or cannot be read), or a pickled forest
        of an older version. One line naming the store and the model, and how to retrain.
    """
    names = list_checkpoints(store)
    if name not in names:
        raise StoreError(
            f"{store.path} has no model {name!r}; models: {', '.join(names) or 'none'}"
        )
    config: dict[str, Any] = {}
    try:
        config = store.model_config(name)
        blob = store.model_bytes(name)
    except Exception as exc:
        raise _model_error(store, name, config, f"cannot be read ({short_reason(exc)})") from exc
    recorded = config.get(HASH_KEY)
    if recorded is not None and model_hash(blob) != recorded:
        raise _model_error(
            store, name, config, "is damaged: its bytes do not match the recorded hash"
        )
    try:
        return classifier_from_state(blob, config)
    except StoreError as exc:
        raise _model_error(store, name, config, str(exc)) from exc
    except Exception as exc:  # from_state wraps its own; this is the last guard
        raise _model_error(store, name, config, f"cannot be read ({short_reason(exc)})") from exc


def _model_error(
    store: ProjectStore, name: str, config: dict[str, Any], problem: str
) -> StoreError:
    """One line: the store, the model, what is wrong with it, and the command that replaces it."""
    kind = config.get("kind")
    model = f" --model {kind}" if kind in MODEL_NAMES else ""
    command = f"napari-hitl train {shlex.quote(str(store.path))} --fresh{model}"
    return StoreError(f"{store.path}: model {name!r} {problem}; retrain it with `{command}`")
