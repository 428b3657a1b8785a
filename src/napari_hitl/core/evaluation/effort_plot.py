"""Effort curves: what the pool's labels and the model reach for the human pixels spent."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def effort_points(report: dict[str, Any]) -> dict[str, list[float]]:
    """Per iteration of a simulation report: the human share of the pool (%) after the
    iteration's strokes and the pool's correctly labeled share (label accuracy × labeled
    fraction); the human share the model was trained on (%) and its test mIoU."""
    rows = report["iterations"]
    gt_px = _pool_gt_pixels(report)
    out: dict[str, list[float]] = {"human_pct": [], "correct": [], "train_pct": [], "miou": []}
    for row in rows:
        acc = row["label_accuracy"]
        out["human_pct"].append(100.0 * row["human_fraction"])
        out["correct"].append(row["labeled_fraction"] * (acc if acc == acc else 0.0))
        out["train_pct"].append(100.0 * row["human_pixels"] / gt_px)
        out["miou"].append(row["test_miou"])
    return out


def _pool_gt_pixels(report: dict[str, Any]) -> float:
    """Pool pixels with ground truth, recovered from a row (human_pixels_total / fraction)."""
    for row in report["iterations"]:
        if row.get("human_fraction"):
            return row["human_pixels_total"] / row["human_fraction"]
    return float("nan")


def plot_effort(
    reports: Sequence[dict[str, Any]],
    path: str | Path,
    labels: Sequence[str] | None = None,
    title: str = "",
) -> Path:
    """Two panels against the human pixels (% of the pool): the pool's correctly labeled share,
    with "paint every pixel" as the reference diagonal, and the test mIoU; one line per report.

    Parameters
    ----------
    reports
        ``simulate`` reports (with the effort fields of any interaction).
    path
        PNG to write.
    labels
        Names of the lines (default: the reports' model names).
    title
        Figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9.4, 3.9))
    xmax = 1.0
    for i, rep in enumerate(reports):
        pts = effort_points(rep)
        name = labels[i] if labels else rep["config"]["model"]
        (line,) = axes[0].plot(pts["human_pct"], pts["correct"], marker="o", ms=3, label=name)
        axes[1].plot(pts["train_pct"], pts["miou"], marker="o", ms=3, color=line.get_color(),
                     label=name)  # fmt: skip
        target = rep.get("effort", {}).get("target")
        if target:
            axes[0].axhline(target, color="0.6", lw=0.8, ls=":")
        xmax = max(xmax, *pts["human_pct"])
    xs = [0, 1.1 * xmax]
    axes[0].plot(xs, [x / 100 for x in xs], color="0.3", ls="--", lw=1, label="paint every pixel")
    axes[0].set_title("pool labeled and right (label acc × labeled)")
    axes[1].set_title("test mIoU")
    axes[0].set_xlabel("human pixels (% of the pool)")
    axes[1].set_xlabel("human pixels trained on (% of the pool)")
    for ax in axes:
        ax.set_xlim(0, 1.1 * xmax)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
