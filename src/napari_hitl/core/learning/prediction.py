"""From logits to what the user sees: classes, calibrated probabilities, confidence, uncertainty."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np

from napari_hitl.core.progress import CancelToken, Progress


@dataclass
class Prediction:
    """A full prediction of one image.

    Attributes
    ----------
    labels
        ``H, W`` uint16 class values (0 where the pixel is invalid).
    probabilities
        ``K, H, W`` float32 calibrated class probabilities.
    confidence
        ``H, W`` float32: μ = max p.
    margin
        ``H, W`` float32: p1 − p2 (small = the two top classes compete).
    entropy
        ``H, W`` float32: −Σ p log p, in nats.
    """

    labels: np.ndarray
    probabilities: np.ndarray
    confidence: np.ndarray
    margin: np.ndarray
    entropy: np.ndarray

    @classmethod
    def empty(cls, n_classes: int, shape: tuple[int, int]) -> Prediction:
        """An all-zero prediction of ``n_classes`` classes over ``shape`` (nothing predicted)."""
        z = np.zeros(shape, np.float32)
        return cls(
            np.zeros(shape, np.uint16),
            np.zeros((n_classes, *shape), np.float32),
            z,
            z.copy(),
            z.copy(),
        )

    def crop(self, rows: slice, cols: slice) -> Prediction:
        """The prediction of rows ``rows`` and columns ``cols`` (views, not copies)."""
        return Prediction(
            self.labels[rows, cols],
            self.probabilities[:, rows, cols],
            self.confidence[rows, cols],
            self.margin[rows, cols],
            self.entropy[rows, cols],
        )

    def paste(self, part: Prediction, box: tuple[int, int, int, int]) -> None:
        """Write ``part``, the prediction of ``box`` ``(row0, row1, col0, col1)``, in place."""
        r0, r1, c0, c1 = box
        self.labels[r0:r1, c0:c1] = part.labels
        self.probabilities[:, r0:r1, c0:c1] = part.probabilities
        self.confidence[r0:r1, c0:c1] = part.confidence
        self.margin[r0:r1, c0:c1] = part.margin
        self.entropy[r0:r1, c0:c1] = part.entropy


def softmax(logits: np.ndarray, temperature: float = 1.0, axis: int = 0) -> np.ndarray:
    """Numerically stable softmax of ``logits / temperature`` along ``axis`` (float32)."""
    z = logits.astype(np.float32) / np.float32(temperature)
    z -= z.max(axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)
    return z


def prediction_from_logits(
    logits: np.ndarray,
    class_values: Sequence[int],
    temperature: float = 1.0,
    valid: np.ndarray | None = None,
) -> Prediction:
    """Class map, probabilities, confidence, margin and entropy from ``K, H, W`` logits."""
    p = softmax(logits, temperature)
    order = np.sort(p, axis=0)
    conf = order[-1]
    margin = order[-1] - order[-2] if p.shape[0] > 1 else np.ones_like(conf)
    entropy = -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=0)
    labels = np.asarray(class_values, np.uint16)[p.argmax(axis=0)]
    if valid is not None:
        labels[~valid] = 0
        conf = np.where(valid, conf, 0.0).astype(np.float32)
    return Prediction(
        labels, p, conf.astype(np.float32), margin.astype(np.float32), entropy.astype(np.float32)
    )


def predict_normalized(
    classifier,
    x: np.ndarray,
    valid: np.ndarray | None = None,
    tile: int | str | None = "auto",
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, Prediction]:
    """Predict a normalized ``C, H, W`` image with any classifier; a progress generator.

    ``tile`` is the tile edge, ``None`` for the whole image at once, ``"auto"`` for the
    classifier's ``default_tile``.
    """
    if tile == "auto":
        tile = int(getattr(classifier, "default_tile", 512))
    logits = yield from classifier.logits_job(x, tile, cancel)
    return prediction_from_logits(logits, classifier.class_values, classifier.temperature, valid)
