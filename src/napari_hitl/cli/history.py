"""``napari-hitl history STORE``: what each Train recorded (effort so far, held-out accuracy).

The records are made by :func:`napari_hitl.core.loop.history.train_record` and kept by the store
(:meth:`~napari_hitl.core.store.ProjectStore.history`); this prints them as a table or JSON and
draws the curve with matplotlib (Agg, no display needed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from napari_hitl.cli.common import add_command, add_json_option
from napari_hitl.core.errors import HitlError


def plot_history(records: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Labeled fraction, machine fraction and held-out accuracy against human pixels (a PNG).

    Trains whose held-out accuracy is unknown (under 20 held-out pixels) leave a gap in that
    curve; the Train numbers are written above the plot.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = [r.get("human_pixels", 0) for r in records]
    fig = Figure(figsize=(7, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    curves = (
        ("labeled_fraction", "labeled fraction", "tab:blue"),
        ("machine_fraction", "machine-labeled fraction", "tab:orange"),
        ("holdout_accuracy", "held-out accuracy", "tab:green"),
    )
    for key, label, color in curves:
        y = [np.nan if r.get(key) is None else float(r[key]) for r in records]
        ax.plot(x, y, "o-", color=color, label=label)
    for r, xi in zip(records, x, strict=True):
        ax.annotate(str(r.get("train", "")), (xi, 1.0), xycoords=ax.get_xaxis_transform(),
                    textcoords="offset points", xytext=(0, 2), ha="center", fontsize=7,
                    color="0.4")  # fmt: skip
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("human-labeled pixels (numbers: Train)")
    ax.set_ylabel("fraction")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title or "napari-hitl history", fontsize=10, pad=14)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, format="png")
    return out


def cmd_history(args: argparse.Namespace) -> int:
    """What each Train recorded: human pixels and strokes, labeled and machine fractions, held-out
    accuracy.

    One line per Train of the project: human-labeled pixels and strokes so far, labeled and
    machine-labeled fractions of all pixels, and the accuracy on the human strokes held out of
    training (the honest measure without ground truth).
    """
    from napari_hitl.core.loop.history import format_history
    from napari_hitl.core.store import open_store

    store = open_store(args.store, "r")
    records = store.history()
    if args.plot and not Path(args.plot).resolve().parent.is_dir():
        raise HitlError(f"--plot {args.plot}: folder {Path(args.plot).parent} does not exist")
    if args.json:
        print(json.dumps(records, indent=1))
    elif not records:
        print(f"{store.path}: no Train recorded yet (train with `napari-hitl train {args.store}`)")
    else:
        print("\n".join(format_history(records)))
    if args.plot:
        note = sys.stderr if args.json else sys.stdout  # --json keeps stdout pure JSON
        if not records:
            print(f"nothing to plot: {args.plot} not written", file=note)
        else:
            print(f"wrote {plot_history(records, args.plot, title=store.path.name)}", file=note)
    return 0


def add_history_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``history`` to the ``napari-hitl`` parser."""
    p = add_command(sub, "history", cmd_history)
    add_json_option(p, "print the records as a JSON list")
    p.add_argument(
        "--plot",
        default=None,
        metavar="FILE",
        help="draw labeled fraction, machine fraction and held-out accuracy against human "
        "pixels into this PNG",
    )
