"""Test-time guiding commands of ``napari-hitl``: ``hint`` and ``guide-eval`` (Guide Me).

``hint`` guides the project's trained model on one image by clicked pixels or typed
``find``/``remove`` commands, prints what changed and optionally accepts the guided prediction
through the usual threshold push. ``guide-eval`` runs the 20-questions protocol.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_hitl.cli.common import add_command, add_threshold_option
from napari_hitl.core.choices import (
    IMAGE_HELP,
    PLACE_HELP,
    SEED_HELP,
)
from napari_hitl.core.text import terminal_safe


def _hint_point(text: str) -> tuple[int, int, str]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3 or not all(p.lstrip("-").isdigit() for p in parts[:2]) or not parts[2]:
        raise argparse.ArgumentTypeError(f"{text!r} is not ROW,COL,CLASS (class name or value)")
    return int(parts[0]), int(parts[1]), parts[2]


def _guide_config(args: argparse.Namespace):
    from napari_hitl.core.hints.guide import GuideConfig

    return GuideConfig(
        steps=args.steps,
        lr=args.lr,
        momentum=args.momentum,
        layer=args.layer,
        stop_when_satisfied=not args.all_steps,
    )


def cmd_hint(args: argparse.Namespace) -> int:
    """Guide the trained model on one image by hints (points, find/remove commands)."""
    from napari_hitl.cli.common import print_progress
    from napari_hitl.core.hints.project import accept_guided, apply_hints, hints_for, open_session
    from napari_hitl.core.progress import run_to_end
    from napari_hitl.core.store import open_store

    if not args.point and not args.commands:
        raise ValueError("give hints: --point ROW,COL,CLASS (repeatable) and/or --command TEXT")
    store = open_store(args.store, "a" if args.accept else "r")
    config = _guide_config(args)
    session = run_to_end(
        open_session(store, args.image, args.slice, layer=config.layer), print_progress
    )
    hints, commands = hints_for(
        session, points=args.point, commands="\n".join(args.commands or []), seed=args.seed
    )
    report = run_to_end(apply_hints(session, hints, config, commands=commands), print_progress)
    change = session.change()
    what = "; ".join([c.describe() for c in commands] + [f"{len(args.point or [])} point(s)"])
    print(
        f"guided {args.image} by {what}: energy {report.energy_before:.3f} -> "
        f"{report.energy_after:.3f} in {report.steps} steps ({report.seconds:.2f} s)"
    )
    print(f"  {change['changed_pixels']} pixels changed class")
    for name, (before, after) in change["classes"].items():  # type: ignore[union-attr]
        if before != after:
            print(f"  {terminal_safe(name)}: {before} -> {after} px")
    if args.out:
        from napari_hitl.core.io.export import write_raster

        info = store.image_info(args.image)
        out = write_raster(
            args.out,
            session.current.labels,
            band_names=["guided_prediction"],
            georef=info.georef,
            band_axis=False,
        )
        print(f"wrote {out}")
    if args.accept:
        record = accept_guided(store, session, args.threshold, args.margin)
        print(
            f"accepted {record.count} guided pixels at confidence >= {args.threshold} "
            f"(undo: napari-hitl undo {args.store} --image {args.image})"
        )
    return 0


def cmd_guide_eval(args: argparse.Namespace) -> int:
    """The 20-questions evaluation of test-time guiding (Guide Me, Table 1).

    Trains a model on part of the images (or uses --checkpoint), then on each held-out image
    asks the pixel with the smallest margin between the two top classes, answers it from the
    mask, guides, and records mIoU and pixel accuracy after 0, 1, 5, 10, 15, 20 questions, next
    to a baseline that fine-tunes the tail's weights on the same answers. Writes
    OUT/report.json and OUT/report.md.
    """
    from napari_hitl.cli.common import print_progress
    from napari_hitl.core.evaluation.simulate import load_image_folder
    from napari_hitl.core.hints.questions import (
        QuestionsConfig,
        format_table,
        guide_eval,
        write_questions_report,
    )
    from napari_hitl.core.learning.net import TrainConfig
    from napari_hitl.core.progress import run_to_end

    clf = None
    if args.checkpoint:
        from napari_hitl.core.loop import load_state
        from napari_hitl.core.store import open_store

        state = load_state(open_store(args.checkpoint, "r"))
        if state is None:
            raise ValueError(f"{args.checkpoint} has no trained model")
        clf = state.classifier
    config = QuestionsConfig(
        questions=args.questions,
        model=args.model,
        train_fraction=args.train_fraction,
        max_eval=args.max_eval,
        guide=_guide_config(args),
        finetune_lr=args.finetune_lr,
        seed=args.seed,
        train=TrainConfig(model=args.model, seed=args.seed, steps=args.train_steps),
    )
    samples = load_image_folder(args.images, args.masks, args.max_images)
    report = run_to_end(guide_eval(samples, config, clf), print_progress)
    path = write_questions_report(report, args.out)
    print(format_table(report))
    print(f"wrote {path} and {Path(args.out) / 'report.md'}")
    return 0


def _add_guide_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=30, help="gradient steps per guide")
    p.add_argument("--lr", type=float, default=None, help="guide learning rate (default per model)")
    p.add_argument(
        "--momentum", type=float, default=0.9, help="momentum of the guide's updates (default 0.9)"
    )
    p.add_argument(
        "--all-steps",
        action="store_true",
        help="run every step (default: stop as soon as every hint is met)",
    )
    p.add_argument(
        "--layer",
        default=None,
        help="where the guiding block goes: unet enc2 (default), enc1, enc0; patch-cnn "
        "fc1_act (default), fc2_act, conv_act",
    )
    p.add_argument("--seed", type=int, default=0, help=SEED_HELP)


def add_hint_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``hint`` and ``guide-eval`` to the ``napari-hitl`` parser."""
    p = add_command(
        sub,
        "hint",
        cmd_hint,
        description="Test-time guiding (Guide Me): a guiding block between the head and the "
        "tail of the project's network is optimized on the hints, the weights stay fixed. "
        "Prints what changed; --accept pushes the guided prediction above --threshold into "
        "the labels (human labels untouched, undoable). Commands: 'find CLASS [in PLACE]', "
        f"'remove CLASS [in PLACE]'; {PLACE_HELP}.",
    )
    p.add_argument("--image", required=True, help=IMAGE_HELP)
    p.add_argument("--slice", type=int, default=None, help="stack slice")
    p.add_argument(
        "--point", type=_hint_point, action="append", help="ROW,COL,CLASS: this pixel is CLASS"
    )
    p.add_argument(
        "--command",
        dest="commands",
        action="append",
        help="e.g. 'find water in top left' (repeatable)",
    )
    p.add_argument("--accept", action="store_true", help="push the guided prediction")
    add_threshold_option(p, "confidence a pushed pixel needs")
    p.add_argument("--margin", type=int, default=2, help="px kept from predicted boundaries")
    p.add_argument("--out", default=None, help="write the guided class map (.tif, .npy)")
    _add_guide_options(p)

    p = add_command(sub, "guide-eval", cmd_guide_eval, store=False)
    p.add_argument("--images", required=True, help="folder of images (PNG/JPEG/TIFF/.npy)")
    p.add_argument("--masks", required=True, help="0 = no ground truth, classes 1..K")
    p.add_argument("--out", required=True, help="folder for report.json and report.md")
    p.add_argument("--questions", type=int, default=20, help="questions per image (default 20)")
    p.add_argument(
        "--model", default="unet", choices=("unet", "patch-cnn"), help="network (default unet)"
    )
    p.add_argument(
        "--checkpoint", default=None, help="a project store whose trained model is used as is"
    )
    p.add_argument(
        "--train-fraction", type=float, default=0.5, help="share of images trained on (default 0.5)"
    )
    p.add_argument("--max-eval", type=int, default=None, help="at most this many held-out images")
    p.add_argument("--max-images", type=int, default=None, help="read at most this many images")
    p.add_argument("--finetune-lr", type=float, default=1e-2, help="baseline learning rate")
    p.add_argument(
        "--train-steps",
        dest="train_steps",
        type=int,
        default=300,
        help="training steps, default 300",
    )
    _add_guide_options(p)
