"""Effort to a finished data set: the corrective simulated user with each model.

Usage (from the repository root, after ``benchmarks/prepare_data.py``)::

    .venv/bin/python -u benchmarks/effort.py [--sets sen1floods,eolearn,dsb2018,...]
        [--models unet,rf,patch-cnn,unet:gate2,rf:m0] [--seeds SET=0,1,2;...] [--iterations 10]
        [--threads 2] [--force] [--summarize-only]

The sets are :data:`SETS` (all of them by default). Every set × model × seed is one ``simulate
--interaction correct`` run (in this process) with the set's options of ``run_simulations.py``
(images used, seed images, scribble fraction) and the corrective user's default budget (0.5 % of
the pool's pixels per iteration). Its report goes to ``OUT/<set>/<model>-s<seed>/report.json``
(with ``effort.png``); a run whose report exists is skipped unless ``--force``. A model may carry
options after colons: ``:gate<F>`` (U-Net only, ``TrainConfig.novelty_gate = F``; ``unet:gate0``:
without the gate) and ``:m<M>`` (the accepting margin in pixels instead of the default 1) and
``:bank`` (U-Net only, the filter-bank front end, ``TrainConfig.filter_bank``) and ``:s<N>`` (U-Net
only, N fresh and N warm training steps instead of the defaults; ``:w<W>`` after it: W warm steps)
and ``:shrink<λ>`` (U-Net only, ``TrainConfig.warm_shrink``) and ``:nojit`` (U-Net only, no
per-band jitter, ``TrainConfig.band_jitter = False``) and ``:row`` (the row-position cue,
``TrainConfig.row_position``) and ``:lov<W>`` last (the Lovász-softmax loss at weight W,
``TrainConfig.lovasz_weight``) and the probe ``:pfix`` (U-Net: the class prior of the first
Train kept, corrections do not move it; ``learning_ablation.py``'s ``prior<F>-`` scales it) and
the probe ``:ndi`` last (the bands gain normalized-difference spectral indices where their names
allow, ``learning_ablation.py``'s ``ndi-``), e.g.
``unet:gate2``, ``rf:m0``, ``unet:bank``, ``unet:s320``,
``unet:s320:w160``, ``unet:shrink1``, ``unet:nojit``, ``unet:row``, ``unet:lov1``; the folder
name writes the colons as ``-``.

The summary ``OUT/summary.md`` (+ ``summary.json``) gives per set and model the human share of the
pool and the strokes spent when the pool was first finished (labeled fraction and label accuracy
both ≥ the target) at the targets 0.95 (the run's), 0.90 and 0.85 (read from the same runs), the
iterations that took, and the final labels and test mIoU; "not reached" when it never was.
``docs/images/effort_<set>.png`` draws the seed-0 runs of a set against the human pixels, with
"paint every pixel" as the reference line.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_simulations import SET_OPTIONS  # noqa: E402

from napari_hitl.core.choices import FILTER_BANK_SIGMAS  # noqa: E402

CACHE = Path("~/.cache/napari-hitl/bench-data").expanduser()
OUT = REPO / "benchmarks" / "results" / "effort"
IMAGES = REPO / "docs" / "images"
SETS = ("sen1floods", "eolearn", "dsb2018", "siftflow", "photos8", "houston", "cloud38")
MODELS = ("unet", "rf", "patch-cnn")
# 3 seeds where a run takes under 5 min on 2 cores; one where rf takes 10+ min a run
DEFAULT_SEEDS = {
    "sen1floods": (0, 1, 2),
    "eolearn": (0, 1, 2),
    "dsb2018": (0,),
    "siftflow": (0,),
    "photos8": (0,),
    "houston": (0, 1, 2),
    "cloud38": (0, 1, 2),
}
TARGETS = (0.95, 0.90, 0.85)
RUN_DIR = re.compile(r"(?P<model>.+)-s(?P<seed>\d+)")  # OUT/<set>/<model>-s<seed>
# a model with options: the U-Net's novelty gate factor, the accepting margin, its bank, steps
MODEL_SPEC = re.compile(
    r"(?P<name>[a-z+-]+?)(?::gate(?P<gate>[0-9.]+))?(?::m(?P<margin>\d+))?(?P<bank>:bank)?"
    r"(?::s(?P<steps>\d+))?(?::w(?P<warm>\d+))?(?::shrink(?P<shrink>[0-9.]+))?(?P<nojit>:nojit)?"
    r"(?P<row>:row)?(?::lov(?P<lovasz>[0-9.]+))?(?P<pfix>:pfix)?(?P<ndi>:ndi)?"
)


def _options(set_name: str) -> dict[str, Any]:
    opts = SET_OPTIONS[set_name]
    return {
        "max_images": int(opts["--max-images"]) if "--max-images" in opts else None,
        "seed_images": int(opts["--seed-images"]),
        "scribble_fraction": float(opts["--scribble-fraction"]),
    }


def run(args: argparse.Namespace) -> None:
    """Run every missing set × model × seed."""
    import torch

    from napari_hitl.core.evaluation.simulate import (
        SimulationConfig,
        load_image_folder,
        simulate,
        write_report,
    )
    from napari_hitl.core.progress import run_to_end

    if args.threads:
        torch.set_num_threads(args.threads)
    for set_name in args.sets:
        opts = _options(set_name)
        samples = load_image_folder(
            CACHE / set_name / "images", CACHE / set_name / "masks", opts["max_images"]
        )
        for seed in args.seeds.get(set_name, DEFAULT_SEEDS[set_name]):
            for model in args.models:
                dest = args.out / set_name / f"{model.replace(':', '-')}-s{seed}"
                if (dest / "report.json").exists() and not args.force:
                    continue
                spec = MODEL_SPEC.fullmatch(model)
                assert spec is not None  # checked by main()
                cfg = SimulationConfig(
                    model=spec["name"],
                    iterations=args.iterations,
                    interaction="correct",
                    seed=seed,
                    seed_images=opts["seed_images"],
                    scribble_fraction=opts["scribble_fraction"],
                    max_images=opts["max_images"],
                )
                cfg.train.threads = args.threads
                if spec["gate"]:
                    cfg.train.novelty_gate = float(spec["gate"])
                if spec["margin"]:
                    cfg.margin = int(spec["margin"])
                if spec["bank"]:
                    cfg.train.filter_bank = list(FILTER_BANK_SIGMAS)
                if spec["steps"]:
                    cfg.train.steps = cfg.train.warm_steps = int(spec["steps"])
                if spec["warm"]:
                    cfg.train.warm_steps = int(spec["warm"])
                if spec["shrink"]:
                    cfg.train.warm_shrink = float(spec["shrink"])
                if spec["nojit"]:
                    cfg.train.band_jitter = False
                if spec["row"]:
                    cfg.train.row_position = True
                if spec["lovasz"]:
                    cfg.train.lovasz_weight = float(spec["lovasz"])
                _install_prior_probe(bool(spec["pfix"]))
                run_samples = samples
                if spec["ndi"]:  # the learning ablation's spectral-index probe
                    from learning_ablation import with_spectral_indices

                    run_samples = with_spectral_indices(samples, set_name)
                t0 = time.perf_counter()
                report = run_to_end(simulate(run_samples, cfg))
                report["wall_seconds"] = round(time.perf_counter() - t0, 1)
                write_report(report, dest)
                eff = report["effort"]
                print(
                    f"{set_name} {model} seed {seed}: {len(report['iterations'])} iterations, "
                    f"{report['wall_seconds']:.0f} s; to target: {eff['human_fraction_to_target']}",
                    flush=True,
                )


_PRIOR_ORIGINAL: list[Any] = []


def _install_prior_probe(fixed: bool) -> None:
    """Probe (U-Net) ``:pfix``: the class log prior of the run's first Train kept for every later
    one (the person's corrections then do not move it), printed at each Train. Without it the
    library's own function is put back, so a probe run cannot leak into the next."""
    from napari_hitl.core.learning import net as net_module

    if not _PRIOR_ORIGINAL:
        _PRIOR_ORIGINAL.append(net_module.class_log_prior)
    original = _PRIOR_ORIGINAL[0]
    net_module.class_log_prior = original
    if not fixed:
        return
    first: list[Any] = []

    def prior(counts, smoothing=1.0):
        if not first:
            first.append(original(counts, smoothing))
        print("  log prior", " ".join(f"{v:+.2f}" for v in first[0]), flush=True)
        return first[0]

    net_module.class_log_prior = prior


def reached(report: dict[str, Any], target: float) -> dict[str, Any] | None:
    """The first iteration whose pool labels reached ``target`` (labeled and accuracy)."""
    from napari_hitl.core.evaluation.simulate import pool_finished

    return next((row for row in report["iterations"] if pool_finished(row, target)), None)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def summarize(args: argparse.Namespace) -> dict[str, Any]:
    """Write ``summary.json``, ``summary.md`` and the per-set plots from the reports found."""
    from napari_hitl.core.evaluation.effort_plot import plot_effort

    summary: dict[str, Any] = {}
    lines = [
        "# Effort to a finished data set (corrective simulated user)",
        "",
        "Generated by `benchmarks/effort.py`. *human %*: pixels painted by the simulated person "
        "(seed strokes + corrections) over the pool's pixels with ground truth, when the pool "
        "was first finished (labeled fraction and label accuracy both ≥ the target); mean over "
        "the seeds that reached it, with how many did. *final*: after the last iteration; *mean "
        "test mIoU*: over each run's iterations, then over the seeds.",
        "",
    ]
    for set_name in SETS:
        rows = []
        plots, names = [], []
        # by whole folder name: the pattern "unet-s*" would also take unet-shrink1-s0
        by_model: dict[str, list[Path]] = {}
        for p in (args.out / set_name).glob("*-s*/report.json"):
            m = RUN_DIR.fullmatch(p.parent.name)
            if m:
                by_model.setdefault(m["model"], []).append(p)
        for model in [*MODELS, *sorted(set(by_model) - set(MODELS))]:
            reps = sorted(by_model.get(model, []))
            if not reps:
                continue
            reports = [json.loads(p.read_text()) for p in reps]
            row: dict[str, Any] = {"model": model, "seeds": len(reports)}
            for t in TARGETS:
                hit = [reached(r, t) for r in reports]
                ok = [h for h in hit if h is not None]
                row[f"reached_{t}"] = len(ok)
                for key, field, scale in (
                    ("human_pct", "human_fraction", 100),
                    ("strokes", "human_strokes", 1),
                    ("iterations", "iteration", 1),
                ):
                    row[f"{key}_{t}"] = _mean([scale * h[field] for h in ok]) if ok else None
            last = [r["iterations"][-1] for r in reports]
            row["final_human_pct"] = _mean([100 * x["human_fraction"] for x in last])
            row["final_labeled"] = _mean([x["labeled_fraction"] for x in last])
            row["final_label_acc"] = _mean([x["label_accuracy"] for x in last])
            row["final_test_miou"] = _mean([x["test_miou"] for x in last])
            # the test mIoU jumps from one iteration to the next (by up to 0.1 on the nuclei):
            # its mean over a run's iterations is the steadier figure for comparing models
            row["mean_test_miou"] = _mean(
                [_mean([x["test_miou"] for x in r["iterations"]]) for r in reports]
            )
            row["iterations_run"] = _mean([len(r["iterations"]) for r in reports])
            row["wall_s"] = _mean([r.get("wall_seconds", float("nan")) for r in reports])
            rows.append(row)
            plots.append(reports[0])
            names.append(model)
        if not rows:
            continue
        summary[set_name] = rows
        cfg = plots[0]["config"]
        lines += [
            f"## {set_name}",
            "",
            f"pool {cfg['n_pool']} / test {cfg['n_test']} images, {cfg['seed_images']} seed "
            f"images, budget {0.5:.1f} % of the pool per iteration, at most "
            f"{cfg['iterations']} iterations",
            "",
            "| model | seeds | "
            + "".join(f"human % to {t:.2f} | strokes | iters | " for t in TARGETS)
            + "final human % | final labeled | final label acc | final test mIoU | "
            "mean test mIoU | wall s |",
            "|---|---:|" + "---:|" * (3 * len(TARGETS) + 6),
        ]
        for r in rows:
            cells = [r["model"], str(r["seeds"])]
            for t in TARGETS:
                hits = r[f"reached_{t}"]
                if hits:
                    n = f" ({hits}/{r['seeds']})" if hits < r["seeds"] else ""
                    cells += [
                        f"{r[f'human_pct_{t}']:.2f}{n}",
                        f"{r[f'strokes_{t}']:.0f}",
                        f"{r[f'iterations_{t}']:.1f}",
                    ]
                else:
                    cells += ["not reached", "–", "–"]
            cells += [
                f"{r['final_human_pct']:.2f}",
                f"{r['final_labeled']:.3f}",
                f"{r['final_label_acc']:.3f}",
                f"{r['final_test_miou']:.3f}",
                f"{r['mean_test_miou']:.3f}",
                f"{r['wall_s']:.0f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", f"![{set_name}](../../../docs/images/effort_{set_name}.png)", ""]
        IMAGES.mkdir(parents=True, exist_ok=True)
        plot_effort(plots, IMAGES / f"effort_{set_name}.png", names, title=f"{set_name} (seed 0)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    return summary


def _seeds(text: str | None) -> dict[str, tuple[int, ...]]:
    """``--seeds 0,1,2`` for every set or ``SET=0,1;SET=0``."""
    if not text:
        return {}
    if "=" not in text:
        return dict.fromkeys(SETS, tuple(int(s) for s in text.split(",")))
    out = {}
    for part in text.split(";"):
        name, _, seeds = part.partition("=")
        out[name.strip()] = tuple(int(s) for s in seeds.split(","))
    return out


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--seeds", default=None, help="0,1,2 for all sets, or SET=0,1;SET=0")
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--summarize-only", action="store_true")
    args = ap.parse_args()
    args.sets = [s for s in args.sets.split(",") if s]
    args.models = [m for m in args.models.split(",") if m]
    bad = [s for s in args.sets if s not in SETS] + [
        m
        for m in args.models
        if not (spec := MODEL_SPEC.fullmatch(m))
        or spec["name"] not in MODELS
        or (
            any(
                spec[k]
                for k in (
                    *("gate", "bank", "steps", "warm", "shrink"),
                    *("nojit", "lovasz", "pfix"),
                )
            )
            and spec["name"] != "unet"
        )
    ]
    if bad:
        raise SystemExit(f"unknown sets/models {bad}")
    args.seeds = _seeds(args.seeds)
    if not args.summarize_only:
        run(args)
    summarize(args)


if __name__ == "__main__":
    main()
