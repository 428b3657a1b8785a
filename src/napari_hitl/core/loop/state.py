"""The loop's training state: the project's normalization, the ``latest`` checkpoint and
what it was trained on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from napari_hitl.core.learning.data import (
    IncompatibleBandsError,
    Normalization,
    TrainingDataError,
    normalization_from_stats,
)
from napari_hitl.core.learning.registry import (
    Classifier,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from napari_hitl.core.learning.registry import model_hash as _hash
from napari_hitl.core.store import ProjectStore

LATEST = "latest"


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


def require_state(store: ProjectStore, what: str = "train first") -> LoopState:
    """The stored model (as :func:`load_state`); before the first training a
    :class:`~napari_hitl.core.learning.data.TrainingDataError` ``"no model yet: <what>"``."""
    state = load_state(store)
    if state is None:
        raise TrainingDataError(f"no model yet: {what}")
    return state


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
