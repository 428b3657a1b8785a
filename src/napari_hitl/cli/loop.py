"""``napari-hitl`` commands of the learning loop: train, predict, push, undo, and the demo."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_hitl.cli.common import (
    IMAGES_HELP,
    add_command,
    add_image_options,
    add_json_option,
    add_margin_option,
    add_threshold_option,
    add_warm_options,
    chosen_images,
    end_per_image,
    image_names,
    parse_region,
    positive_int,
    print_json,
    print_progress,
    train_config,
)
from napari_hitl.cli.scale import add_batch_options
from napari_hitl.core.choices import (
    DEMO_LOOP_ITERATIONS,
    IMAGE_HELP,
    SEED_HELP,
    THREADS_HELP,
)
from napari_hitl.core.learning.config import MODEL_DEFAULTS


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the sample scene: napari with a display, headless results otherwise."""
    from napari_hitl.demo import run_demo

    return run_demo(
        out=Path(args.out), mode=args.mode, size=args.size, loop_iterations=args.loop_iterations
    )


# ----------------------------------------------------------------------- loop on a store


def cmd_train(args: argparse.Namespace) -> int:
    """Train the project's model on its labels (warm start)."""
    from napari_hitl.core.loop import train_project
    from napari_hitl.core.progress import run_to_end
    from napari_hitl.core.store import open_store

    store = open_store(args.store, "a")
    report, state = run_to_end(
        train_project(store, train_config(args), image_names(args.images), fresh=args.fresh),
        print_progress,
    )
    if args.json:
        print_json(
            {
                "model": state.classifier.kind,
                "iteration": state.iteration,
                "warm_start": report.warm_start,
                "steps": report.steps,
                "seconds": round(report.seconds, 3),
                "final_loss": report.final_loss,
                "temperature": report.temperature,
                "holdout_pixels": report.holdout_pixels,
                "holdout_accuracy": report.holdout_accuracy,
                "class_pixels": list(report.class_pixels),
                "model_choice": report.model_choice,
            }
        )
        return 0
    if report.model_choice:
        print(report.model_choice["summary"])
    print(
        f"trained {state.classifier.kind} (iteration {state.iteration}, "
        f"{'warm start' if report.warm_start else 'fresh'}): {report.steps} steps in "
        f"{report.seconds:.1f} s, loss {report.final_loss:.3f}; temperature "
        f"{report.temperature:.2f} from {report.holdout_pixels} held-out human pixels"
        + (
            f" ({report.holdout_accuracy:.1%} of them right)"
            if report.holdout_accuracy is not None
            else ""
        )
        + f"; class pixels {report.class_pixels}"
    )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict images with the project's model (stored, signed)."""
    # Whole images go block by block through dask into the store (resumable; --scheduler for a
    # cluster, cli/scale.py); --slice and --region predict that part in memory, here.
    from napari_hitl.core.loop import clip_region, load_state, predict_project_image
    from napari_hitl.core.progress import run_to_end
    from napari_hitl.core.store import open_store

    if args.slice is None and args.region is None:
        from napari_hitl.cli.scale import cmd_predict_batch

        return cmd_predict_batch(args)
    store = open_store(args.store, "a")
    state = load_state(store)
    names = chosen_images(store, args)
    region = parse_region(args.region)
    rows = []
    for name in names:
        pred = run_to_end(
            predict_project_image(
                store, name, state, tile=args.tile or "auto", index=args.slice, region=region
            ),
            print_progress,
        )
        conf = pred.confidence
        where = ""
        if region is not None:
            r0, r1, c0, c1 = clip_region(region, conf.shape[-2:])
            conf = conf[..., r0:r1, c0:c1]
            where = f" of rows {r0}:{r1}, cols {c0}:{c1}"
        if args.slice is not None:
            where += f" of slice {args.slice}"
        elif conf.ndim == 3:
            where += f" of {conf.shape[0]} slices"
        above = float((conf >= args.threshold).mean())
        rows.append(
            {
                "image": name,
                "slice": args.slice,
                "region": list(clip_region(region, conf.shape[-2:])) if region else None,
                "threshold": args.threshold,
                "share_at_threshold": above,
            }
        )
        if not args.json:
            print(f"{name}: {above:.1%} of pixels{where} at confidence ≥ {args.threshold}")
    return end_per_image(args, rows)


def cmd_push(args: argparse.Namespace) -> int:
    """Add predictions with confidence ≥ threshold to unlabeled pixels."""
    from napari_hitl.core.loop import push_project_image
    from napari_hitl.core.store import open_store

    store = open_store(args.store, "a")
    names = chosen_images(store, args)
    region = parse_region(args.region)
    rows = []
    for name in names:
        rec = push_project_image(
            store, name, args.threshold, region, margin=args.margin, index=args.slice
        )
        rows.append({"image": name, "added": rec.count, "iteration": rec.iteration})
        if not args.json:
            print(f"{name}: added {rec.count} machine labels (iteration {rec.iteration})")
    return end_per_image(args, rows)


def cmd_undo(args: argparse.Namespace) -> int:
    """Undo the last push of an image (or clear machine labels)."""
    from napari_hitl.core.loop.accept import store_clear_machine, store_undo
    from napari_hitl.core.store import open_store

    store = open_store(args.store, "a")
    if args.clear_machine:
        n, text = store_clear_machine(store, args.image), "removed {} machine labels"
    else:
        n, text = store_undo(store, args.image), "reverted {} pixels"
    if args.json:
        key = "removed_machine_labels" if args.clear_machine else "reverted_pixels"
        print_json({"image": args.image, key: n})
    else:
        print(f"{args.image}: " + text.format(n))
    return 0


def add_loop_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``train``, ``predict``, ``push`` and ``undo``."""
    from napari_hitl.core.choices import DEFAULT_MODEL, MODEL_CHOICES, MODEL_HELP

    models_help = "; ".join(f"{k}: {v}" for k, v in MODEL_HELP.items())
    p = add_command(
        sub,
        "train",
        cmd_train,
        description=f"Models — {models_help}.",
    )
    p.add_argument(
        "--model", default=DEFAULT_MODEL, choices=MODEL_CHOICES, help=f"default {DEFAULT_MODEL}"
    )
    p.add_argument(
        "--images", nargs="+", default=None, help="train on these images only: " + IMAGES_HELP
    )
    p.add_argument(
        "--bands",
        default=None,
        help="names of the bands the model uses, comma-separated, e.g. B04,B03,B02 (default: "
        "all); images are read by band name, a model on other bands is not continued",
    )
    p.add_argument("--fresh", action="store_true", help="start from scratch, not the last model")
    for flag, key, what in (
        ("--steps", "steps", "a fresh model"),
        ("--warm-steps", "warm_steps", "a warm start"),
    ):
        defaults = ", ".join(f"{m} {int(d[key])}" for m, d in MODEL_DEFAULTS.items())
        p.add_argument(
            flag,
            type=positive_int,
            default=None,
            help=f"training steps of {what}, ≥ 1 (default: {defaults})",
        )
    add_warm_options(p)
    p.add_argument("--threads", type=positive_int, default=None, help=THREADS_HELP)
    p.add_argument("--seed", type=int, default=0, help=SEED_HELP)
    add_json_option(p)

    p = add_command(sub, "predict", cmd_predict)
    add_image_options(p)
    p.add_argument(
        "--tile",
        type=int,
        default=None,
        help="tile edge for inference (default: the model's, 1024 for networks)",
    )
    add_threshold_option(p, "confidence of the printed summary")
    p.add_argument(
        "--slice",
        type=int,
        default=None,
        help="stacks: predict this slice (0-based) only (default: every slice)",
    )
    p.add_argument(
        "--region",
        default=None,
        help="ROW0,ROW1,COL0,COL1: predict only this box (pixels, end exclusive); outside it "
        "prediction and confidence are 0",
    )
    add_batch_options(p)
    add_json_option(p)

    p = add_command(sub, "push", cmd_push)
    add_image_options(p)
    add_threshold_option(p, "minimum confidence to add")
    add_margin_option(p)
    p.add_argument(
        "--slice",
        type=int,
        default=None,
        help="stacks: push this slice (0-based) only (default: every slice the model has "
        "predicted)",
    )
    p.add_argument(
        "--region",
        default=None,
        help="ROW0,ROW1,COL0,COL1: push only inside this box (pixels, end exclusive)",
    )
    add_json_option(p)

    p = add_command(sub, "undo", cmd_undo)
    p.add_argument("--image", required=True, help=IMAGE_HELP)
    p.add_argument("--clear-machine", action="store_true", help="remove every machine label")
    add_json_option(p)


def add_demo_command(sub: argparse._SubParsersAction) -> None:
    """Register ``demo``."""
    p = add_command(sub, "demo", cmd_demo, store=False)
    p.add_argument("--out", default="hitl-demo-output", help="folder for the results")
    p.add_argument(
        "--mode",
        choices=["auto", "gui", "headless"],
        default="auto",
        help="gui: open napari and wait; headless: screenshot and exit",
    )
    p.add_argument("--size", type=int, default=512, help="sample scene edge in pixels")
    p.add_argument(
        "--loop-iterations",
        type=int,
        default=DEMO_LOOP_ITERATIONS,
        help="iterations of the simulated-user loop on sample scenes "
        f"(default {DEMO_LOOP_ITERATIONS}; 0: skip)",
    )
