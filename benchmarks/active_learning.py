"""Compare the active-learning strategies with the simulated user, at equal human effort.

Usage (from the repository root, after ``benchmarks/prepare_data.py``)::

    .venv/bin/python -u benchmarks/active_learning.py [--sets sen1floods,dsb2018]
        [--strategies hise,entropy,margin,kcenter,gmm,random] [--seeds 0,1,2]
        [--iterations 10] [--pseudo none] [--threads 2] [--summarize-only]

Every set × strategy × seed is one ``simulate`` run (in this process) whose report goes to
``OUT/<set>/<pseudo>/<strategy>-s<seed>.json``. Each iteration the simulated human strokes the
top-ranked pool tiles until the set's pixel budget is spent; the seed (split, first strokes) is
shared by all strategies, so runs of one seed differ only in what the human is shown.

The summary (``OUT/summary_<pseudo>.md``, ``docs/images/active_<set>_<pseudo>.png``) gives, per
strategy, the mean test mIoU over the seeds at each iteration and the *pixel ratio*: the human
pixels a strategy's mean curve needs to reach random's final mean mIoU, over random's final human
pixels (the issue's goal is ≤ 0.70). A strategy that never reaches it gets "not reached".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CACHE = Path("~/.cache/napari-hitl/bench-data").expanduser()
OUT = REPO / "benchmarks" / "results" / "active"
IMAGES = REPO / "docs" / "images"
STRATEGIES = ("hise", "entropy", "margin", "kcenter", "gmm", "random")

# Per set: images used, seed images, stroke share per item, tile edge, human pixels per iteration,
# the classes that are not objects for τ_l.
SETS: dict[str, dict[str, Any]] = {
    "sen1floods": {
        "max_images": None,
        "seed_images": 1,
        "scribble_fraction": 0.01,
        "tile": 64,
        "budget": 150,
        "background": (1,),
    },
    "dsb2018": {
        "max_images": 40,
        "seed_images": 1,
        "scribble_fraction": 0.01,
        "tile": 128,
        "budget": 300,
        "background": (1,),
    },
    "eolearn": {
        "max_images": None,
        "seed_images": 1,
        "scribble_fraction": 0.02,
        "tile": 25,
        "budget": 60,
        "background": (),
    },
}


def run(args: argparse.Namespace) -> None:
    """Run every missing set × strategy × seed report."""
    import torch

    from napari_hitl.core.evaluation.simulate import SimulationConfig, load_image_folder, simulate
    from napari_hitl.core.progress import run_to_end

    torch.set_num_threads(args.threads)
    for name in args.sets:
        opts = SETS[name]
        samples = load_image_folder(
            CACHE / name / "images", CACHE / name / "masks", opts["max_images"]
        )
        for seed in args.seeds:
            for strategy in args.strategies:
                path = OUT / name / args.pseudo / f"{strategy}-s{seed}.json"
                if path.exists() and not args.force:
                    continue
                cfg = SimulationConfig(
                    iterations=args.iterations,
                    seed_images=opts["seed_images"],
                    scribble_fraction=opts["scribble_fraction"],
                    seed=seed,
                    strategy=strategy,
                    budget=opts["budget"],
                    tile=opts["tile"],
                    pseudo=args.pseudo,
                    background=tuple(opts["background"]),
                )
                t0 = time.perf_counter()
                report = run_to_end(simulate(samples, cfg))
                report["wall_seconds"] = round(time.perf_counter() - t0, 1)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(report, indent=1, allow_nan=True))
                last = report["iterations"][-1]
                print(
                    f"{name} {args.pseudo} {strategy} seed {seed}: final mIoU "
                    f"{last['test_miou']:.3f} at {last['human_pixels']} human px "
                    f"({report['wall_seconds']:.0f} s)",
                    flush=True,
                )


def _curve(reports: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean human pixels, mean and std of test mIoU per iteration over seeds."""
    px = np.array([[r["human_pixels"] for r in rep["iterations"]] for rep in reports], float)
    miou = np.array([[r["test_miou"] for r in rep["iterations"]] for rep in reports], float)
    return px.mean(0), np.nanmean(miou, 0), np.nanstd(miou, 0)


def pixels_to_reach(px: np.ndarray, miou: np.ndarray, target: float) -> float | None:
    """Human pixels where a curve first reaches ``target`` (linear between iterations)."""
    for i in range(len(miou)):
        if miou[i] >= target:
            if i == 0:
                return float(px[0])
            f = (target - miou[i - 1]) / max(miou[i] - miou[i - 1], 1e-12)
            return float(px[i - 1] + f * (px[i] - px[i - 1]))
    return None


def summarize(args: argparse.Namespace) -> None:
    """Tables and curve plots of every report found."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [
        f"# Active-learning strategies (pseudo-labels: {args.pseudo})",
        "",
        "Generated by `benchmarks/active_learning.py`. Mean over seeds of the test mIoU; "
        "`pixel ratio` = human pixels needed to reach random's final mean mIoU / random's "
        "final human pixels (goal ≤ 0.70).",
        "",
    ]
    for name in args.sets:
        folder = OUT / name / args.pseudo
        reports = {
            s: [json.loads(p.read_text()) for p in sorted(folder.glob(f"{s}-s*.json"))]
            for s in STRATEGIES
        }
        reports = {s: r for s, r in reports.items() if r}
        if "random" not in reports:
            continue
        rpx, rmiou, _ = _curve(reports["random"])
        target, budget_px = float(rmiou[-1]), float(rpx[-1])
        opts = SETS[name]
        cfg = reports["random"][0]["config"]
        lines += [
            f"## {name}",
            "",
            f"pool {cfg['n_pool']} / test {cfg['n_test']} images, tiles of {opts['tile']} px, "
            f"{opts['budget']} human px per iteration after {opts['seed_images']} seed image(s) "
            f"at {opts['scribble_fraction']}, {cfg['iterations']} iterations, seeds "
            f"{sorted({r['config']['seed'] for r in reports['random']})}; random's final mean "
            f"mIoU {target:.3f} at {budget_px:.0f} human px.",
            "",
            "| strategy | seeds | mIoU it. 1 | mIoU it. 5 | final mIoU (± std) | "
            "pixel ratio to random's final | mean wall s |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for s, reps in reports.items():
            px, miou, sd = _curve(reps)
            reach = pixels_to_reach(px, miou, target)
            ratio = "not reached" if reach is None else f"{reach / budget_px:.2f}"
            wall = np.mean([r.get("wall_seconds", np.nan) for r in reps])
            mid = miou[min(4, len(miou) - 1)]
            lines.append(
                f"| {s} | {len(reps)} | {miou[0]:.3f} | {mid:.3f} | {miou[-1]:.3f} ± "
                f"{sd[-1]:.3f} | {ratio} | {wall:.0f} |"
            )
            style = {"lw": 2.4, "color": "k"} if s == "random" else {"lw": 1.5}
            (line,) = ax.plot(px, miou, marker="o", ms=3, label=s, **style)
            ax.fill_between(px, miou - sd, miou + sd, alpha=0.08, color=line.get_color())
        ax.axhline(target, color="k", ls=":", lw=1)
        ax.set_xlabel("human pixels (mean over seeds)")
        ax.set_ylabel("test mIoU (mean over seeds)")
        ax.set_title(f"{name}: strategies at equal human effort ({args.pseudo} pseudo-labels)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        IMAGES.mkdir(parents=True, exist_ok=True)
        png = IMAGES / f"active_{name}_{args.pseudo}.png"
        fig.savefig(png, dpi=90)
        plt.close(fig)
        lines += ["", f"![{name}](../../../docs/images/{png.name})", ""]
    out = OUT / f"summary_{args.pseudo}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    """Parse the options, run what is missing, summarize."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sets", default="sen1floods,dsb2018")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--pseudo", choices=["none", "routed", "all"], default="none")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--force", action="store_true")
    p.add_argument("--summarize-only", action="store_true")
    args = p.parse_args()
    args.sets = [s for s in args.sets.split(",") if s]
    args.strategies = [s for s in args.strategies.split(",") if s]
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    if not args.summarize_only:
        run(args)
    summarize(args)


if __name__ == "__main__":
    main()
