"""Segmentation scores against a ground truth (0 = no ground truth): one confusion matrix, summed
over images when a data set is scored, and the pixel accuracy and mIoU read from it."""

from __future__ import annotations

import numpy as np


def confusion(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> np.ndarray:
    """``n+1 × n+1`` counts of (truth, predicted) class values; pixels without truth ignored.

    Raises
    ------
    ValueError
        A value of ``pred`` or ``truth`` lies outside ``0..n_classes`` (it would be counted in
        another class's cell).
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from the truth's {truth.shape}")
    for what, a in (("prediction", pred), ("truth", truth)):
        if a.size and (a.min() < 0 or a.max() > n_classes):
            raise ValueError(
                f"{what} holds values {int(a.min())}..{int(a.max())} outside the classes "
                f"0..{n_classes}"
            )
    m = truth > 0
    n = n_classes + 1
    idx = truth[m].astype(np.int64) * n + pred[m].astype(np.int64)
    return np.bincount(idx, minlength=n * n).reshape(n, n)


def scores(cm: np.ndarray) -> dict[str, float]:
    """Pixel accuracy and mIoU over the classes present in the truth, of a :func:`confusion`.

    A pixel predicted 0 (no prediction) counts as wrong. Both are NaN without any truth.
    """
    rows = cm[1:]
    total = rows.sum()
    if total == 0:
        return {"miou": float("nan"), "pixel_accuracy": float("nan")}
    inter = np.diag(cm)[1:]
    union = cm.sum(0)[1:] + cm.sum(1)[1:] - inter
    present = cm.sum(1)[1:] > 0
    return {
        "miou": float((inter[present] / np.maximum(union[present], 1)).mean()),
        "pixel_accuracy": float(inter.sum() / total),
    }


def balanced_accuracy(cm: np.ndarray) -> float:
    """Mean over the classes present in the truth of the share of their pixels predicted right
    (mean per-class recall), of a :func:`confusion`; NaN without any truth."""
    rows = cm[1:]
    present = rows.sum(1) > 0
    if not present.any():
        return float("nan")
    return float((np.diag(cm)[1:][present] / rows.sum(1)[present]).mean())


def image_scores(cms: list[np.ndarray], names: list[str]) -> list[dict[str, object]]:
    """Per image: its pixels with truth, mIoU, pixel accuracy and each class's share of those
    pixels in the prediction and in the truth (class values 1..n in order), from its
    :func:`confusion`.

    A data set's pooled score hides an image that goes wrong (a test image a model suddenly
    calls mostly one class); these rows show which one and how.

    Parameters
    ----------
    cms
        Per image, its :func:`confusion` (their sum is the data set's).
    names
        Per image, the name its row carries.

    Returns
    -------
    list of dict
        Per image ``image``, ``pixels``, ``miou``, ``pixel_accuracy`` (4 digits) and the
        per-class ``predicted_share`` and ``true_share`` lists.
    """
    out: list[dict[str, object]] = []
    for cm, name in zip(cms, names, strict=True):
        total = int(cm[1:].sum())
        s = scores(cm)
        denom = max(total, 1)
        out.append(
            {
                "image": name,
                "pixels": total,
                "miou": round(s["miou"], 4),
                "pixel_accuracy": round(s["pixel_accuracy"], 4),
                "predicted_share": [round(float(v) / denom, 4) for v in cm[1:, 1:].sum(0)],
                "true_share": [round(float(v) / denom, 4) for v in cm[1:].sum(1)],
            }
        )
    return out
