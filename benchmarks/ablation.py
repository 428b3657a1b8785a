"""Why the loop does not degrade: simulate with each fix switched off, over several seeds.

Runs ``napari-hitl simulate`` (U-Net, no oracle) on prepared sets with the variants below and
prints one row per set × variant: test mIoU at iteration 1, at the end, its lowest value, the
share of accepted pixels that were right, and how often test pixels at confidence ≥ 0.95 were
right. Seeds differ in the pool/test split, the scribbles and the weights.

Usage (from the repository root, after ``benchmarks/prepare_data.py``)::

    .venv/bin/python benchmarks/ablation.py --sets sen1floods --seeds 0,1,2
    .venv/bin/python benchmarks/ablation.py --summarize-only

Two runs go side by side with one torch thread each (``--jobs``); on 2 cores a sen1floods run takes
about a minute, a dsb2018 run about three.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run_simulations import DEFAULT_CACHE, build_command  # noqa: E402

DEFAULT_OUT = Path.home() / ".cache" / "napari-hitl" / "ablation"
VARIANTS: dict[str, list[str]] = {
    "plain warm start": ["--warm-shrink", "1", "--margin", "0"],
    "margin 1": ["--warm-shrink", "1", "--margin", "1"],
    "margin 2": ["--warm-shrink", "1", "--margin", "2"],
    "shrink 0.5": ["--warm-shrink", "0.5", "--margin", "0"],
    "shrink 0.5 + margin 1 (default)": ["--warm-shrink", "0.5", "--margin", "1"],
    "shrink 0.5 + margin 2": ["--warm-shrink", "0.5", "--margin", "2"],
    "shrink 0.5 + margin 1 + PreciseBN": ["--warm-shrink", "0.5", "--margin", "1", "--precise-bn"],
}


def slug(name: str) -> str:
    """A folder name for a variant."""
    return "".join(c if c.isalnum() else "-" for c in name.split(" (")[0]).strip("-")


def run_one(cache: Path, out: Path, sset: str, variant: str, seed: int) -> None:
    """One simulate run (skipped when its report exists)."""
    dest = out / sset / slug(variant) / f"seed{seed}"
    if (dest / "report.json").exists():
        return
    extra = ["--seed", str(seed), "--threads", "1", *VARIANTS[variant]]
    cmd = build_command(cache, sset, "unet", "none", 10, dest, {}, extra)
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / "simulate.log", "w") as log:
        subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip


def row(reports: list[dict]) -> dict[str, float]:
    """Seed-averaged figures of one set × variant."""
    miou = np.array([[it["test_miou"] for it in r["iterations"]] for r in reports])
    right = judged = 0.0
    for r in reports:
        for it in r["iterations"]:
            a = it["accepted_accuracy"]
            if a == a and it["accepted_pixels"]:  # not NaN
                right += a * it["accepted_pixels"]
                judged += it["accepted_pixels"]
    cal = [
        r["iterations"][-1]["test_calibration"]["thresholds"]["0.95"]["accuracy"] for r in reports
    ]
    return {
        "seeds": len(reports),
        "miou_first": float(miou[:, 0].mean()),
        "miou_final": float(miou[:, -1].mean()),
        "miou_min": float(miou.min(1).mean()),
        "miou_mean": float(miou.mean()),
        "accepted_accuracy": right / judged if judged else float("nan"),
        "test_acc_at_095_final": float(np.nanmean(cal)),
        "labeled_fraction_final": float(
            np.mean([r["iterations"][-1]["labeled_fraction"] for r in reports])
        ),
    }


def summarize(out: Path) -> str:
    """A markdown table from every report under ``out``."""
    lines = [
        "| set | variant | seeds | mIoU it. 1 | mIoU final | lowest | mean over it. "
        "| accepted right | test right at ≥ 0.95 (final) | labeled (final) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    table = {}
    for sset_dir in sorted(p for p in out.iterdir() if p.is_dir()):
        for variant in VARIANTS:
            reps = [
                json.loads(f.read_text())
                for f in sorted((sset_dir / slug(variant)).glob("seed*/report.json"))
            ]
            if not reps:
                continue
            r = table.setdefault(sset_dir.name, {})[variant] = row(reps)
            lines.append(
                f"| {sset_dir.name} | {variant} | {r['seeds']} | {r['miou_first']:.3f} | "
                f"{r['miou_final']:.3f} | {r['miou_min']:.3f} | {r['miou_mean']:.3f} | "
                f"{r['accepted_accuracy']:.3f} | {r['test_acc_at_095_final']:.3f} | "
                f"{r['labeled_fraction_final']:.2f} |"
            )
    (out / "ablation.json").write_text(json.dumps(table, indent=2))
    md = "\n".join(lines) + "\n"
    (out / "ablation.md").write_text(md)
    return md


def main(argv: list[str] | None = None) -> int:
    """Run the ablation and print its table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    ap.add_argument("--sets", default="sen1floods,dsb2018,eolearn")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default=None, help="comma-separated names (default: all)")
    ap.add_argument("--jobs", type=int, default=2, help="runs side by side (1 thread each)")
    ap.add_argument("--summarize-only", action="store_true")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summarize_only:
        variants = args.variants.split(",") if args.variants else list(VARIANTS)
        jobs = [
            (s, v, int(seed))
            for s in args.sets.split(",")
            for v in variants
            for seed in args.seeds.split(",")
        ]
        with ThreadPoolExecutor(args.jobs) as ex:
            list(ex.map(lambda j: run_one(args.cache, args.out, *j), jobs))
    print(summarize(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
