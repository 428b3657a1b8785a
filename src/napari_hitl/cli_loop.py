"""``napari-hitl`` commands of the learning loop: train, predict, push, undo, bench, simulate,
demo."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_hitl.cli_common import (
    IMAGES_HELP,
    image_names,
    parse_region,
    positive_int,
    print_json,
    print_progress,
    split_list,
)
from napari_hitl.cli_scale import add_batch_options
from napari_hitl.core.choices import IMAGE_HELP, SEED_HELP, STORE_HELP, STRATEGIES, THREADS_HELP


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the sample scene (GUI with a display, headless otherwise)."""
    from napari_hitl.demo import run_demo

    return run_demo(
        out=Path(args.out), mode=args.mode, size=args.size, loop_iterations=args.loop_iterations
    )


# ----------------------------------------------------------------------- loop on a store
def train_config(args: argparse.Namespace):
    """The TrainConfig of ``train`` and ``simulate``: their shared options, unset ones default."""
    from napari_hitl.core.classifier import TrainConfig

    cfg = TrainConfig(model=args.model, seed=args.seed, threads=args.threads)
    for key in (
        "steps",
        "warm_steps",
        "machine_weight",
        "warm_shrink",
        "propagate_weight",
        "potts_weight",
    ):
        if getattr(args, key, None) is not None:
            setattr(cfg, key, getattr(args, key))
    cfg.precise_bn = bool(getattr(args, "precise_bn", False))
    cfg.tta = bool(getattr(args, "tta", False))
    cfg.calibration = getattr(args, "calibration", None)
    cfg.bands = split_list(getattr(args, "bands", None))
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    """Train the project's model on its labels (warm start from the last model)."""
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
            }
        )
        return 0
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
    """Predict images with the project's model; store prediction, confidence and uncertainty.

    Whole images go block by block through dask into the store (resumable; ``--scheduler`` for
    a cluster); ``--slice`` and ``--region`` predict that part in memory."""
    from napari_hitl.core.loop import clip_region, load_state, predict_project_image
    from napari_hitl.core.progress import run_to_end
    from napari_hitl.core.store import open_store

    if args.slice is None and args.region is None:
        from napari_hitl.cli_scale import cmd_predict_batch

        return cmd_predict_batch(args)
    store = open_store(args.store, "a")
    state = load_state(store)
    names = store.image_names() if args.all or not args.image else [args.image]
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
    if args.json:
        print_json({"images": rows})
    return 0


def add_warm_options(p: argparse.ArgumentParser) -> None:
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
        "--propagate-weight",
        type=float,
        default=None,
        help="spread each stroke over the superpixels pure in its class at this loss weight "
        "(default 0 = off; 0.3 helped dsb2018 and eo-learn, cost sen1floods 0.01, see "
        "docs/benchmarks.md)",
    )
    p.add_argument(
        "--potts-weight",
        type=float,
        default=None,
        help="weight of the relaxed Potts loss: neighbours with similar bands agree (default 0)",
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
        "--tta",
        action="store_true",
        help="test-time augmentation: the network predicts the image and its three flips and "
        "averages them (4x inference time; kept with the model)",
    )


def add_margin_option(p: argparse.ArgumentParser) -> None:
    from napari_hitl.core.choices import DEFAULT_MARGIN

    p.add_argument(
        "--margin",
        type=int,
        default=DEFAULT_MARGIN,
        help="accept only pixels this many px inside a confident region of one class "
        f"(default {DEFAULT_MARGIN}; 0 = every pixel above the threshold)",
    )


def cmd_push(args: argparse.Namespace) -> int:
    """Accept confident predictions into unlabeled pixels."""
    from napari_hitl.core.loop import push_project_image
    from napari_hitl.core.store import open_store

    store = open_store(args.store, "a")
    names = store.image_names() if args.all or not args.image else [args.image]
    region = parse_region(args.region)
    rows = []
    for name in names:
        rec = push_project_image(
            store, name, args.threshold, region, margin=args.margin, index=args.slice
        )
        rows.append({"image": name, "added": rec.count, "iteration": rec.iteration})
        if not args.json:
            print(f"{name}: added {rec.count} machine labels (iteration {rec.iteration})")
    if args.json:
        print_json({"images": rows})
    return 0


def cmd_undo(args: argparse.Namespace) -> int:
    """Undo the last push of an image (or remove every machine label)."""
    from napari_hitl.core.feedback import store_clear_machine, store_undo
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


# ---------------------------------------------------------------------------- bench
def cmd_bench(args: argparse.Namespace) -> int:
    """Speed of every model on this machine, with ratios to rf and to the matmul rate."""
    from napari_hitl.core.bench import format_table, run_bench

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
    """The simulated-user benchmark on a folder of images and masks."""
    from napari_hitl.core.active import Schedule
    from napari_hitl.core.progress import run_to_end
    from napari_hitl.core.simulate import (
        SimulationConfig,
        check_config,
        load_image_folder,
        simulate,
        write_report,
    )

    train = train_config(args)
    config = SimulationConfig(
        model=args.model,
        iterations=args.iterations,
        threshold=args.threshold,
        interaction=args.interaction,
        seed_images=args.seed_images,
        scribble_fraction=args.scribble_fraction,
        test_fraction=args.test_fraction,
        max_images=args.max_images,
        seed=args.seed,
        margin=args.margin,
        train=train,
        strategy=args.strategy,
        budget=args.budget,
        tile=args.tile,
        pseudo=args.pseudo,
        schedule=Schedule(
            beta0=args.beta0,
            dbeta=args.dbeta,
            gamma0=args.gamma0,
            dgamma=args.dgamma,
            delta=args.threshold,
        ),
        background=tuple(int(v) for v in (split_list(args.background) or [])),
        target=args.target,
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


def add_loop_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``train``, ``predict``, ``push``, ``undo``, ``bench``, ``simulate``, ``demo``."""
    from napari_hitl.core.choices import DEFAULT_MODEL, MODEL_HELP, MODEL_NAMES

    models_help = "; ".join(f"{k}: {v}" for k, v in MODEL_HELP.items())
    p = sub.add_parser(
        "train",
        help="train the project's model on its labels (warm start)",
        description=f"Models — {models_help}.",
    )
    p.add_argument("store", help=STORE_HELP)
    p.add_argument(
        "--model", default=DEFAULT_MODEL, choices=MODEL_NAMES, help=f"default {DEFAULT_MODEL}"
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
    p.add_argument(
        "--steps", type=positive_int, default=None, help="training steps (fresh model), ≥ 1"
    )
    p.add_argument(
        "--warm-steps", type=positive_int, default=None, help="training steps (warm start), ≥ 1"
    )
    add_warm_options(p)
    p.add_argument("--threads", type=positive_int, default=None, help=THREADS_HELP)
    p.add_argument("--seed", type=int, default=0, help=SEED_HELP)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="predict images with the project's model (stored, signed)")
    p.add_argument("store", help=STORE_HELP)
    p.add_argument("--image", help="one image (default: all)")
    p.add_argument("--all", action="store_true", help="every image")
    p.add_argument(
        "--tile",
        type=int,
        default=None,
        help="tile edge for inference (default: the model's, 1024 for networks)",
    )
    p.add_argument("--threshold", type=float, default=0.95, help="for the printed summary")
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
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "push", help="add predictions with confidence ≥ threshold to unlabeled pixels"
    )
    p.add_argument("store", help=STORE_HELP)
    p.add_argument("--image", help="one image (default: all)")
    p.add_argument("--all", action="store_true", help="every image")
    p.add_argument(
        "--threshold", type=float, default=0.95, help="minimum confidence to add (default 0.95)"
    )
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
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("undo", help="undo the last push of an image (or clear machine labels)")
    p.add_argument("store", help=STORE_HELP)
    p.add_argument("--image", required=True, help=IMAGE_HELP)
    p.add_argument("--clear-machine", action="store_true", help="remove every machine label")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=cmd_undo)

    p = sub.add_parser(
        "bench",
        help="speed of each model here: training s/iteration, inference "
        "Mpx/s, ratios to rf, FLOPs against the measured matmul rate",
    )
    p.add_argument("--models", default="unet,patch-cnn,rf", help="comma-separated")
    p.add_argument("--size", type=int, default=1024, help="inference image edge (15 bands)")
    p.add_argument("--iter-size", type=int, default=512, help="training/iteration image edge")
    p.add_argument("--threads", type=positive_int, default=None, help=THREADS_HELP)
    p.add_argument(
        "--repeats", type=int, default=2, help="timed runs per figure, best kept (default 2)"
    )
    p.add_argument("--out", default=None, help="folder for bench.json and bench.md")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "simulate",
        help="simulated-user benchmark: scribbles → train → accept confident pixels → repeat",
        description="The source paper's protocol (§3.1) on images + ground-truth masks. "
        f"Models — {models_help}.",
    )
    p.add_argument("--images", required=True, help="folder of images (PNG/JPEG/TIFF/.npy)")
    p.add_argument(
        "--masks",
        required=True,
        help="folder of masks with the same file stems (0 = no ground truth, 1..K = classes)",
    )
    p.add_argument("--out", required=True, help="folder for report.json and curves.png")
    p.add_argument(
        "--model", default=DEFAULT_MODEL, choices=MODEL_NAMES, help=f"default {DEFAULT_MODEL}"
    )
    p.add_argument(
        "--iterations", type=int, default=10, help="train/predict/push rounds (default 10)"
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.95,
        help="confidence a pushed pixel needs (default 0.95)",
    )
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
        default=0.95,
        help="the pool is finished when labeled fraction and label accuracy both reach it "
        "(default 0.95); report.json's effort gives what reaching it cost",
    )
    p.add_argument("--seed-images", type=int, default=10, help="pool images the human labels")
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
    p.add_argument(
        "--json", action="store_true", help="print the summary and effort as one JSON object"
    )
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "demo",
        help="the main job on the sample scene: napari with a display, headless results otherwise",
    )
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
        default=8,
        help="iterations of the simulated-user loop on sample scenes (default 8; 0: skip)",
    )
    p.set_defaults(func=cmd_demo)
