"""What every ``napari-hitl`` command shares: progress printing, JSON output, list and number
parsing, the options several commands take. The command modules of :mod:`napari_hitl.cli`
import from here, never from each other.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from napari_hitl.cli.progress import ProgressPrinter
from napari_hitl.core.choices import (
    DEFAULT_MARGIN,
    DEFAULT_THRESHOLD,
    FILTER_BANK_SIGMAS,
    STORE_HELP,
)
from napari_hitl.core.errors import HitlError

T = TypeVar("T")

# a long job's progress: a bar on a terminal, a line per tenth when piped
print_progress = ProgressPrinter()


def add_command(
    sub: argparse._SubParsersAction,
    name: str,
    func: Callable[[argparse.Namespace], int],
    *,
    help: str | None = None,
    description: str | None = None,
    store: bool = True,
) -> argparse.ArgumentParser:
    """Declare the command ``name``, run by ``func``; every command is declared here.

    Parameters
    ----------
    sub
        The subparsers of the ``napari-hitl`` parser.
    name, func
        The command's name and the function that runs it (returns the exit status).
    help, description
        The line of ``napari-hitl --help`` and the text of ``napari-hitl NAME --help``. By
        default they come from ``func``'s docstring: its first paragraph (without the final
        full stop) is the line, the paragraphs after it the text (the line again if none).
    store
        Whether the command's first argument is the project store (most commands).

    Returns
    -------
    argparse.ArgumentParser
        The command's parser, for its own options.
    """
    paragraphs = [
        " ".join(par.split()) for par in inspect.cleandoc(func.__doc__ or "").split("\n\n")
    ]
    if help is None:
        help = paragraphs[0].removesuffix(".")
    if description is None:
        description = " ".join(paragraphs[1:]) or paragraphs[0]
    p = sub.add_parser(name, help=help, description=description)
    if store:
        p.add_argument("store", help=STORE_HELP)
    p.set_defaults(func=func)
    return p


def json_safe(value: object) -> object:
    """``value`` with NaN and infinities as ``None`` (JSON has neither) and numpy scalars and
    arrays as Python numbers and lists."""
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        value = value.tolist()  # type: ignore[attr-defined]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def print_json(obj: object) -> None:
    """One JSON object on stdout (``--json`` of the commands)."""
    print(json.dumps(json_safe(obj)))


def split_list(text: str | None) -> list[str] | None:
    """``"a, b,c"`` → ``["a", "b", "c"]`` (``None`` for empty text)."""
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def image_names(values: Sequence[str] | str | None) -> list[str] | None:
    """``--images a,b``, ``--images a b`` or both mixed: the names in order (None: all)."""
    if values is None:
        return None
    items = [values] if isinstance(values, str) else list(values)
    names = [n for item in items for n in (split_list(item) or [])]
    return names or None


IMAGES_HELP = "image names, comma- or space-separated (default: all)"


def positive_int(text: str) -> int:
    """argparse type: a whole number ≥ 1 (steps, threads, iterations...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def parse_indices(text: str | None, option: str) -> list[int] | None:
    """``--rgb 3,2,1``: non-negative band indices (``None`` when not given)."""
    items = split_list(text)
    if not items:
        return None
    if not all(i.isdigit() for i in items):
        raise HitlError(
            f"{option} {text!r} must be band indices counted from 0, e.g. {option} 3,2,1"
        )
    return [int(i) for i in items]


def parse_region(text: str | None) -> tuple[int, int, int, int] | None:
    """``--region row0,row1,col0,col1`` as a box (``None`` when not given)."""
    if not text:
        return None
    items = split_list(text) or []
    if len(items) != 4 or not all(i.lstrip("-").isdigit() for i in items):
        raise HitlError(
            f"--region {text!r} must be four integers ROW0,ROW1,COL0,COL1 (pixels, end exclusive)"
        )
    r0, r1, c0, c1 = (int(i) for i in items)
    return r0, r1, c0, c1


def bank_scales(text: str) -> list[float]:
    """argparse type of ``--filter-bank``: ``"on"`` (the default scales) or scales in pixels,
    comma-separated, e.g. ``1,2,4`` (each is range-checked with the other settings)."""
    if text.strip().lower() == "on":
        return list(FILTER_BANK_SIGMAS)
    try:
        return [float(v) for v in split_list(text) or []] or [float("nan")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not 'on' or scales in pixels, comma-separated, e.g. 1,2,4"
        ) from None


def add_warm_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--filter-bank",
        type=bank_scales,
        default=None,
        metavar="on|SIGMAS",
        help="unet: feed the network a fixed multiscale filter bank (ilastik-style features) "
        "beside the bands, 'on' for scales "
        + ",".join(f"{v:g}" for v in FILTER_BANK_SIGMAS)
        + " or e.g. 1,2 (helped nuclei and fields, hurt flood, city and cloud tiles: "
        "docs/learning-log.md)",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="train a network for this many seconds instead of its steps (every Train; the "
        "step count then depends on the machine's speed; the forest ignores it)",
    )
    p.add_argument(
        "--machine-weight",
        type=float,
        default=None,
        help="loss weight of machine labels relative to human ones (default 0.5)",
    )
    p.add_argument(
        "--warm-shrink",
        type=float,
        default=None,
        help="share of the last weights a warm start keeps; the rest is the initial weights "
        "(default 0.5; 1 = plain warm start, 0 = from scratch)",
    )
    p.add_argument(
        "--image-power",
        type=float,
        default=None,
        metavar="A",
        help="how the training crops spread over the images: an image is drawn with "
        "probability proportional to its labeled pixels of the crop's class to the power A "
        "(default 0 = every image alike; 1 = every labeled pixel alike, the draw before "
        "2026-12-06: docs/learning-log.md)",
    )
    p.add_argument(
        "--propagate-weight",
        type=float,
        default=None,
        help="spread each stroke over the superpixels pure in its class at this loss weight "
        "(default 0 = off; 0.3 helped dsb2018 and eo-learn, cost sen1floods 0.01, see "
        "docs/learning-log.md)",
    )
    p.add_argument(
        "--potts-weight",
        type=float,
        default=None,
        help="weight of the relaxed Potts loss: neighbours with similar bands agree (default 0)",
    )
    p.add_argument(
        "--lovasz-weight",
        type=float,
        default=None,
        help="add the Lovász-softmax loss, a surrogate of the mean IoU, at this weight to the "
        "cross-entropy (default 0 = off; see docs/learning-log.md)",
    )
    p.add_argument(
        "--novelty-gate",
        type=float,
        default=None,
        metavar="FACTOR",
        help="unet: lower the confidence of pixels whose features lie further than FACTOR x the "
        "99th percentile of the human pixels' own distance from every class (0 = off; see "
        "docs/learning-log.md)",
    )
    p.add_argument(
        "--calibration",
        choices=("brier", "nll"),
        default=None,
        help="what the temperature minimises on held-out strokes (default: brier for unet, nll "
        "for the others)",
    )
    p.add_argument(
        "--precise-bn",
        action="store_true",
        help="re-estimate BatchNorm statistics after training (PreciseBN; +0.3 s per iteration)",
    )
    p.add_argument(
        "--row-position",
        action="store_true",
        help="photos: give the model each pixel's height in its image as one more input (sky "
        "is up); off for tiles, slides and stacks (kept with the model; see docs/learning.md)",
    )
    p.add_argument(
        "--no-band-jitter",
        action="store_true",
        help="unet: train without the per-band gain/offset jitter (it helps multispectral, "
        "radar and photo sets; stained nuclei did better without it: docs/learning-log.md)",
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: the network predicts the image and its three flips and "
        "averages them (4x inference time; kept with the model)",
    )


def add_margin_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--margin",
        type=int,
        default=DEFAULT_MARGIN,
        help="accept only pixels this many px inside a confident region of one class "
        f"(default {DEFAULT_MARGIN}; 0 = every pixel above the threshold)",
    )


def train_config(args: argparse.Namespace):
    """The TrainConfig of ``train`` and ``simulate``: their shared options, unset ones default."""
    from napari_hitl.core.learning.net import TrainConfig

    cfg = TrainConfig(model=args.model, seed=args.seed, threads=args.threads)
    for key in (
        "steps",
        "warm_steps",
        "time_budget",
        "filter_bank",
        "machine_weight",
        "warm_shrink",
        "image_power",
        "propagate_weight",
        "potts_weight",
        "lovasz_weight",
        "novelty_gate",
    ):
        if getattr(args, key, None) is not None:
            setattr(cfg, key, getattr(args, key))
    cfg.precise_bn = bool(getattr(args, "precise_bn", False))
    cfg.tta = bool(getattr(args, "tta", False))
    cfg.band_jitter = not getattr(args, "no_band_jitter", False)
    cfg.row_position = bool(getattr(args, "row_position", False))
    cfg.calibration = getattr(args, "calibration", None)
    cfg.bands = split_list(getattr(args, "bands", None))
    return cfg


JSON_HELP = "print the result as one JSON object"


def add_json_option(p: argparse.ArgumentParser, help: str = JSON_HELP) -> None:
    """``--json``: print the command's result as JSON instead of lines."""
    p.add_argument("--json", action="store_true", help=help)


def add_threshold_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--threshold``: the confidence ``what`` needs (default
    :data:`~napari_hitl.core.choices.DEFAULT_THRESHOLD`, the widgets' default too)."""
    p.add_argument(
        "--threshold", type=float, default=DEFAULT_THRESHOLD,
        help=f"{what} (default {DEFAULT_THRESHOLD})",
    )  # fmt: skip


def add_image_options(p: argparse.ArgumentParser, all_help: str = "every image") -> None:
    """``--image NAME`` or ``--all``: which images of the store a command works on."""
    p.add_argument("--image", help="one image (default: all)")
    p.add_argument("--all", action="store_true", help=all_help)


def chosen_images(store: Any, args: argparse.Namespace) -> list[str]:
    """The images ``--image`` / ``--all`` (:func:`add_image_options`) choose: all by default."""
    return store.image_names() if args.all or not args.image else [args.image]


def end_per_image(args: argparse.Namespace, rows: list[dict[str, Any]]) -> int:
    """Finish a command that printed one line per image: with ``--json`` print
    ``{"images": rows}`` instead. Returns the exit status 0."""
    if args.json:
        print_json({"images": rows})
    return 0


def from_args(cls: type[T], args: argparse.Namespace, **given: Any) -> T:
    """A ``cls`` dataclass from the options of the same names, and ``given`` for the others
    (the command-line options of a settings object are named like its fields)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    taken = {n: getattr(args, n) for n in names - set(given) if hasattr(args, n)}
    return cls(**taken, **given)
