"""What the loop widget previews: the last prediction of an image — of the slice on show, of a
whole stack (its slices taken as the view moves), or pieced together from the boxes of live
rounds — and the pixels that Add predictions would add from it, without any inference."""

from __future__ import annotations

import numpy as np

from napari_hitl.core.learning.prediction import Prediction
from napari_hitl.core.loop.accept import accept_mask
from napari_hitl.core.tiling import Box


class PredictionPreview:
    """The prediction the threshold preview and the uncertainty style read.

    Attributes
    ----------
    prediction
        The 2-D prediction of the plane on show (``None`` before the first one).
    image
        The image it belongs to.
    index
        The stack slice it belongs to (``None`` for a 2-D image).
    stack
        A whole-stack prediction whose slices follow the view (``None`` otherwise).
    """

    def __init__(self) -> None:
        self.prediction: Prediction | None = None
        self.image: str | None = None
        self.index: int | None = None
        self.stack: Prediction | None = None

    def keep(self, image: str, prediction: Prediction, index: int | None) -> None:
        """Keep the prediction of one plane (``index``: its stack slice)."""
        self.image, self.prediction, self.index, self.stack = image, prediction, index, None

    def keep_stack(self, image: str, prediction: Prediction) -> None:
        """Keep a whole-stack prediction; :meth:`show_slice` takes the plane on show from it."""
        self.image, self.stack = image, prediction

    def paste(
        self,
        image: str,
        part: Prediction,
        box: Box,
        index: int | None,
        shape: tuple[int, int],
    ) -> None:
        """Paste the prediction of one box (a live round) into the plane's prediction, starting
        an empty one when the kept prediction is of another image, slice or size."""
        k = part.probabilities.shape[0]
        pred = self.prediction
        if (
            pred is None
            or self.image != image
            or self.index != index
            or pred.probabilities.shape != (k, *shape)
        ):
            pred = Prediction.empty(k, shape)
        pred.paste(part, box)
        self.keep(image, pred, index)

    def show_slice(self, index: int | None) -> bool:
        """Take slice ``index`` of a kept whole-stack prediction; returns whether it did."""
        stack = self.stack
        if stack is None or index is None or stack.labels.ndim != 3:
            return False
        self.prediction = Prediction(
            stack.labels[index],
            stack.probabilities[:, index],
            stack.confidence[index],
            stack.margin[index],
            stack.entropy[index],
        )
        self.index = index
        return True

    def accepted(
        self,
        labels: np.ndarray,
        threshold: float,
        region: Box | None,
        margin: int,
    ) -> np.ndarray | None:
        """Pixels Add predictions would add now: confident, inside ``region``, ``margin`` px
        inside a class boundary, and unlabeled in ``labels`` (the layer's data, a stack or a
        plane); ``None`` without a prediction or when the shapes disagree."""
        pred = self.prediction
        if pred is None:
            return None
        accepted = accept_mask(
            pred.confidence, threshold, region, predicted=pred.labels, margin=margin
        )
        labels = np.asarray(labels)
        if self.index is not None:
            labels = labels[self.index]
        if labels.shape != accepted.shape:
            return None
        return accepted & (labels == 0)
