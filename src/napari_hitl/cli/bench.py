"""``napari-hitl`` commands that measure: ``bench`` (speed on this machine) and ``simulate``
(the simulated-user benchmark on a folder of images and masks)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_hitl.cli.common import (
    add_command,
    add_json_option,
    add_margin_option,
    add_threshold_option,
    add_warm_options,
    from_args,
    positive_int,
    print_json,
    print_progress,
    split_list,
    train_config,
)
from napari_hitl.core.choices import (
    DEFAULT_THRESHOLD,
    SEED_CHOICES,
    SEED_HELP,
    STRATEGIES,
    THREADS_HELP,
)


# ---------------------------------------------------------------------------- bench
def cmd_bench(args: argparse.Namespace) -> int:
    """Speed of each model here: training s/iteration, inference Mpx/s, ratios to rf, FLOPs against
    the measured matmul rate.
    """
    from napari_hitl.core.evaluation.bench import format_table, run_bench

    models = split_list(args.models) or None
    result = run_bench(
        models or ("unet", "patch-cnn", "rf"),
        size=args.size,
        iter_size=args.iter_size,
        threads=args.threads,
        repeats=args.repeats,
    )
    table = format_table(result)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.json").write_text(json.dumps(result, indent=2))
        (out / "bench.md").write_text(table + "\n")
        print(f"wrote {out / 'bench.json'} and {out / 'bench.md'}")
    return 0


# ------------------------------------------------------------------------- simulate
def cmd_simulate(args: argparse.Namespace) -> int:
    """Simulated-user benchmark: scribbles → train → accept confident pixels → repeat."""
    from napari_hitl.core.active.strategies import Schedule
    from napari_hitl.core.evaluation.simulate import (
        SimulationConfig,
        check_config,
        load_image_folder,
        simulate,
        write_report,
    )
    from napari_hitl.core.progress import run_to_end

    config = from_args(
        SimulationConfig,
        args,
        train=train_config(args),
        schedule=from_args(Schedule, args, delta=args.threshold),
        background=tuple(int(v) for v in (split_list(args.background) or [])),
    )
    check_config(config)
    samples = load_image_folder(args.images, args.masks, args.max_images)
    classes = list(range(1, args.classes + 1)) if args.classes else None
    report = run_to_end(simulate(samples, config, classes), print_progress)
    rpath, cpath = write_report(report, args.out)
    if args.json:
        print_json({"summary": report["summary"], "effort": report["effort"],
                    "report": str(rpath), "curves": str(cpath)})  # fmt: skip
        return 0
    if report["config"].get("model_choice"):
        print(report["config"]["model_choice"]["summary"])
    for row in report["iterations"]:
        print(
            f"iteration {row['iteration']:2d}: test mIoU {row['test_miou']:.3f}, "
            f"acc {row['test_pixel_accuracy']:.3f}; labeled {row['labeled_fraction']:.3f} "
            f"at {row['label_accuracy']:.3f}; accepted {row['accepted_pixels']} "
            f"({row['accepted_accuracy']:.3f} right); train {row['train_seconds']:.1f}s, "
            f"infer {row['infer_seconds']:.1f}s"
            + (f"; human px {row['human_pixels']}" if args.strategy else "")
            + (
                f"; human {row['human_fraction']:.2%} of the pool, {row['human_strokes']} strokes"
                if args.interaction == "correct"
                else ""
            )
        )
    eff = report["effort"]
    if args.interaction == "correct":
        print(
            f"pool finished (≥ {eff['target']:.0%} labeled at ≥ {eff['target']:.0%} accuracy) "
            f"after {eff['iterations_to_target']} iterations, "
            f"{eff['human_fraction_to_target']:.2%} of the pool painted by hand, "
            f"{eff['human_strokes_to_target']} strokes"
            if eff["iterations_to_target"]
            else f"pool not finished (target {eff['target']:.0%}) after "
            f"{len(report['iterations'])} iterations"
        )
    sm = report["summary"]
    print(
        f"summary: test mIoU final {sm['final_test_miou']:.3f}, best {sm['best_test_miou']:.3f} "
        f"(final/best {sm['final_over_best']:.2f}); accepted pixels "
        f"{sm['accepted_accuracy']:.1%} right over all iterations; pool labeled "
        f"{sm['labeled_fraction']:.1%} at {sm['label_accuracy']:.1%} accuracy"
    )
    print(f"wrote {rpath} and {cpath}")
    return 0


def add_bench_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``bench`` and ``simulate``."""
    from napari_hitl.core.choices import DEFAULT_MODEL, MODEL_CHOICES, MODEL_HELP

    models_help = "; ".join(f"{k}: {v}" for k, v in MODEL_HELP.items())
    p = add_command(sub, "bench", cmd_bench, store=False)
    p.add_argument(
        "--models",
        default="unet,patch-cnn,rf",
        help="comma-separated; unet:bank is the U-Net with its filter bank (--filter-bank on)",
    )
    p.add_argument("--size", type=int, default=1024, help="inference image edge (15 bands)")
    p.add_argument("--iter-size", type=int, default=512, help="training/iteration image edge")
    p.add_argument("--threads", type=positive_int, default=None, help=THREADS_HELP)
    p.add_argument(
        "--repeats", type=int, default=2, help="timed runs per figure, best kept (default 2)"
    )
    p.add_argument("--out", default=None, help="folder for bench.json and bench.md")

    p = add_command(
        sub,
        "simulate",
        cmd_simulate,
        description="The source paper's protocol (§3.1) on images + ground-truth masks. "
        f"Models — {models_help}.",
        store=False,
    )
    p.add_argument("--images", required=True, help="folder of images (PNG/JPEG/TIFF/.npy)")
    p.add_argument(
        "--masks",
        required=True,
        help="folder of masks with the same file stems (0 = no ground truth, 1..K = classes)",
    )
    p.add_argument("--out", required=True, help="folder for report.json and curves.png")
    p.add_argument(
        "--model", default=DEFAULT_MODEL, choices=MODEL_CHOICES, help=f"default {DEFAULT_MODEL}"
    )
    p.add_argument(
        "--iterations", type=int, default=10, help="train/predict/push rounds (default 10)"
    )
    add_threshold_option(p, "confidence a pushed pixel needs")
    p.add_argument(
        "--interaction",
        choices=["none", "oracle", "correct"],
        default="none",
        help="oracle: the simulated human removes wrong accepted pixels each iteration; "
        "correct: after each push she paints strokes over the pool's wrong or missing labels, "
        "largest error first, until --budget pixels (stops once the pool reaches --target)",
    )
    p.add_argument(
        "--target",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="the pool is finished when labeled fraction and label accuracy both reach it "
        f"(default {DEFAULT_THRESHOLD}); report.json's effort gives what reaching it cost",
    )
    p.add_argument("--seed-images", type=int, default=10, help="pool images the human labels")
    p.add_argument(
        "--seed-choice",
        choices=SEED_CHOICES,
        default="random",
        help="which pool images the human labels first: drawn at random, or the most typical "
        "image of each of as many kinds of image (read from their bands alone)",
    )
    p.add_argument(
        "--scribble-fraction",
        type=float,
        default=0.01,
        help="share of each seed image covered by strokes",
    )
    p.add_argument(
        "--test-fraction", type=float, default=0.25, help="share of the images kept for testing"
    )
    p.add_argument("--max-images", type=int, default=None, help="use only the first N pairs")
    p.add_argument(
        "--classes",
        type=int,
        default=None,
        help="number of classes K (default: the values found in the masks)",
    )
    p.add_argument(
        "--steps", type=positive_int, default=None, help="training steps, first iteration"
    )
    p.add_argument(
        "--warm-steps", type=positive_int, default=None, help="training steps, later iterations"
    )
    p.add_argument(
        "--threads", type=positive_int, default=None, help="torch threads (default: all cores)"
    )
    add_warm_options(p)
    add_margin_option(p)
    p.add_argument("--seed", type=int, default=0, help=SEED_HELP)
    g = p.add_argument_group(
        "active learning",
        "with --strategy, each iteration the simulated human strokes the top-ranked pool "
        "items (images, or tiles with --tile) until --budget pixels are spent",
    )
    g.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default=None,
        help="rank the pool for the human (default: none)",
    )
    g.add_argument(
        "--budget",
        type=int,
        default=None,
        help="human pixels per iteration, with --strategy or --interaction correct "
        "(default: 2 median pool images' worth of --scribble-fraction strokes; with correct, "
        "0.5%% of the pool's pixels)",
    )
    g.add_argument("--tile", type=int, default=None, help="rank tiles of this edge (px)")
    g.add_argument(
        "--pseudo",
        choices=["all", "routed", "none"],
        default="all",
        help="pseudo-labels above --threshold on every pool image (all), only on "
        "the easiest gamma share of the ranking (routed, HISE), or none",
    )
    g.add_argument("--beta0", type=float, default=0.9, help="HISE beta_0 (uncertain below)")
    g.add_argument("--dbeta", type=float, default=0.02, help="beta falls by this per iteration")
    g.add_argument("--gamma0", type=float, default=0.3, help="machine share of the items")
    g.add_argument("--dgamma", type=float, default=0.1, help="gamma grows by this per iteration")
    g.add_argument("--background", default=None, help="class values that are not objects")
    add_json_option(p, "print the summary and effort as one JSON object")
