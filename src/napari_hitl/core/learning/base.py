"""What every model of the loop is: the :class:`Classifier` protocol, and the tiled inference
the pixel models share (:class:`TiledLogits`).

A new model implements the protocol (usually by subclassing :class:`TiledLogits` and writing
``fit``, ``window_logits``, ``state`` and a ``from_state`` class method), and is added to
:func:`napari_hitl.core.learning.registry.make_classifier` and ``classifier_from_state`` and to the
names
in :mod:`napari_hitl.core.choices`.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from napari_hitl.core.progress import CancelToken, Progress, run_to_end
from napari_hitl.core.tiling import tiled_apply

if TYPE_CHECKING:
    from napari_hitl.core.learning.config import TrainConfig, TrainJob
    from napari_hitl.core.learning.data import LabeledImage, Normalization


@runtime_checkable
class Classifier(Protocol):
    """A model that learns per-pixel classes from sparse labels and predicts logits.

    Attributes
    ----------
    kind
        The model's name (``"unet"``, ``"rf"``, ``"unet+rf"``…).
    normalization, class_values, class_names
        The bands it reads and how, and the classes it predicts (in this order).
    temperature, class_log_prior
        Calibration applied by :mod:`napari_hitl.core.learning.prediction` (the prior is already in
        the logits).
    trained
        Whether :meth:`fit` has run.
    halo, align
        Context pixels each side a window needs, and the multiple its size must have.
    """

    kind: str
    normalization: Normalization
    class_values: list[int]
    class_names: list[str]
    temperature: float
    class_log_prior: np.ndarray
    trained: bool

    @property
    def halo(self) -> int: ...

    @property
    def align(self) -> int: ...

    def fit(
        self, images: Sequence[LabeledImage], config: TrainConfig, cancel: CancelToken | None = None
    ) -> TrainJob: ...

    def window_logits(self, window: np.ndarray) -> np.ndarray: ...

    def logits_job(
        self, x: np.ndarray, tile: int | str | None = "auto", cancel: CancelToken | None = None
    ) -> Generator[Progress, None, np.ndarray]: ...

    def logits(self, x: np.ndarray, tile: int | str | None = "auto") -> np.ndarray: ...

    def state(self) -> tuple[bytes, dict[str, Any]]: ...


class TiledLogits:
    """Whole-image logits from :meth:`window_logits`, tile by tile with their halo, so that
    tiled and whole-image predictions agree. Subclasses set :attr:`default_tile` and provide
    ``window_logits``, ``halo``, ``align`` and ``class_values``."""

    default_tile: int | None = 1024  # the subclass also has the Classifier attributes

    def common_config(self) -> dict[str, Any]:
        """What every model's saved configuration holds: kind, bands, classes, calibration."""
        return {
            "kind": self.kind,
            "normalization": self.normalization.to_json(),
            "class_values": self.class_values,
            "class_names": self.class_names,
            "temperature": self.temperature,
            "class_log_prior": self.class_log_prior.tolist(),
            "trained": self.trained,
        }

    def restore_calibration(self, config: dict[str, Any]) -> None:
        """Temperature and class prior from a saved configuration.

        Raises
        ------
        ValueError
            The prior does not have one value per class.
        """
        self.temperature = float(config.get("temperature", 1.0))
        if config.get("class_log_prior") is not None:
            prior = np.asarray(config["class_log_prior"], np.float32)
            if prior.shape != (len(self.class_values),):
                raise ValueError(f"{prior.size} class priors for {len(self.class_values)} classes")
            self.class_log_prior = prior

    @property
    def halo(self) -> int:
        raise NotImplementedError

    @property
    def align(self) -> int:
        """Window sizes must be multiples of this (1: any size)."""
        return 1

    def window_logits(self, window: np.ndarray) -> np.ndarray:
        """Logits ``K, h, w`` of the centre of a normalized window padded by :attr:`halo`.

        ``window`` is ``C, h + 2*halo, w + 2*halo`` (sizes rounded up to :attr:`align`); this
        is the per-tile step of :meth:`logits_job`, for callers that cut the windows
        themselves (dask blocks).
        """
        raise NotImplementedError

    def logits_job(
        self, x: np.ndarray, tile: int | str | None = "auto", cancel: CancelToken | None = None
    ) -> Generator[Progress, None, np.ndarray]:
        """Logits ``K, H, W`` of a normalized image; a progress generator (``tile``: the edge
        of the tiles, ``"auto"`` the model's :attr:`default_tile`, ``None`` the whole image)."""
        tile = self.default_tile if tile == "auto" else tile
        return (
            yield from tiled_apply(
                self.window_logits, x, len(self.class_values), self.halo, self.align, tile, cancel
            )
        )  # type: ignore[arg-type]

    def logits(self, x: np.ndarray, tile: int | str | None = "auto") -> np.ndarray:
        """:meth:`logits_job` without progress."""
        return run_to_end(self.logits_job(x, tile))
