"""The simulated-user benchmark's curves: the source paper's Figure 4 (test mIoU, label
accuracy and labeled fraction against the iteration)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

FIGURE4_KEYS: tuple[tuple[str, str], ...] = (
    ("test_miou", "test mIoU"),
    ("label_accuracy", "label accuracy (pool)"),
    ("labeled_fraction", "labeled fraction (pool)"),
)


def plot_curves(
    reports: Sequence[dict[str, Any]],
    path: str | Path,
    labels: Sequence[str] | None = None,
    keys: Sequence[tuple[str, str]] = FIGURE4_KEYS,
    title_prefix: str = "",
    styles: Sequence[dict[str, Any]] | None = None,
) -> Path:
    """The paper's Figure 4: one panel per report key (default: test mIoU, label accuracy and
    labeled fraction) against the iteration, one line per report.

    ``labels`` name the lines (default ``model / interaction``); ``styles`` gives each line extra
    matplotlib keywords (colour, line style); ``title_prefix`` goes before each panel's title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(keys), figsize=(4.3 * len(keys) + 0.4, 3.8))
    for r_i, rep in enumerate(reports):
        its = [row["iteration"] for row in rep["iterations"]]
        name = (
            labels[r_i] if labels else f"{rep['config']['model']} / {rep['config']['interaction']}"
        )
        style = styles[r_i] if styles else {}
        for ax, (key, title) in zip(axes, keys, strict=True):
            ax.plot(its, [row[key] for row in rep["iterations"]], marker="o", ms=3, label=name,
                    **style)  # fmt: skip
            ax.set_title(f"{title_prefix}{title}")
            ax.set_xlabel("iteration")
            ax.set_ylim(0, 1.02)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
