"""Run the ``napari-hitl simulate`` benchmark matrix on the prepared data sets; summarize it.

Usage (from the repository root, after ``benchmarks/prepare_data.py``)::

    python benchmarks/run_simulations.py [--cache DIR] [--out DIR] [--sets ...] [--models ...]
        [--interactions none,oracle] [--iterations 10] [--max-images N | SET=N,...]
        [--dry-run] [--force] [--summarize-only]

Every combination set x model x interaction is one ``simulate`` run writing
``OUT/<set>/<model>-<interaction>/{report.json,curves.png,simulate.log,run.json}``; a run whose
``report.json`` exists is skipped unless ``--force``.  Afterwards ``OUT/summary.json``,
``OUT/summary.md`` and one ``OUT/<set>_curves.png`` per set are written from all reports found
under ``OUT`` (whatever ``--sets``/``--models`` say), so partial reruns keep the full summary.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = Path("~/.cache/napari-hitl/bench-data").expanduser()
DEFAULT_OUT = REPO / "benchmarks" / "results"
SETS = ("siftflow", "dsb2018", "eolearn", "sen1floods")
MODELS = ("unet", "patch-cnn", "rf")
INTERACTIONS = ("none", "oracle")

# Per-set simulate options, chosen so that the 24-run matrix stays well under 2 h on 2 cores.
SET_OPTIONS: dict[str, dict[str, str]] = {
    "siftflow": {"--max-images": "60", "--seed-images": "10", "--scribble-fraction": "0.01"},
    # the same photos in the Stanford Background set's 8 categories (the seed paper's protocol:
    # 10 seed images, 1 % strokes)
    "photos8": {"--max-images": "60", "--seed-images": "10", "--scribble-fraction": "0.01"},
    # rf trains on up to 5000 px per class and pool image: with all 65 images (49 in the pool)
    # one rf iteration takes ~130 s on 2 cores, ~21 min per run; 40 images halve that.
    # ``--max-images dsb2018=0`` uses all 65.
    "dsb2018": {"--max-images": "40", "--seed-images": "10", "--scribble-fraction": "0.01"},
    # 50x50 tiles: one forest stroke already overshoots 1 %, so 0.02 adds a few more pixels.
    "eolearn": {"--seed-images": "5", "--scribble-fraction": "0.02"},
    "sen1floods": {"--seed-images": "4", "--scribble-fraction": "0.01"},
    # one scene each, cut into 128² tiles like sen1floods (16 and 9 tiles)
    "houston": {"--seed-images": "4", "--scribble-fraction": "0.01"},
    "cloud38": {"--seed-images": "3", "--scribble-fraction": "0.01"},
}

# (column title, key in a row of summary.json, format)
COLUMNS: list[tuple[str, str, str]] = [
    ("final mIoU", "final_test_miou", ".3f"),
    ("best mIoU", "best_test_miou", ".3f"),
    ("final pixel acc", "final_test_pixel_accuracy", ".3f"),
    ("final labeled frac", "final_labeled_fraction", ".3f"),
    ("final label acc", "final_label_accuracy", ".3f"),
    ("mean accepted acc", "mean_accepted_accuracy", ".3f"),
    ("human px", "total_human_pixels", "d"),
    ("mean train s", "mean_train_seconds", ".1f"),
    ("mean infer s", "mean_infer_seconds", ".1f"),
    ("wall s", "wall_seconds", ".0f"),
]


def _csv(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    """Split a comma-separated option and check every item is allowed."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in items if s not in allowed]
    if bad:
        raise SystemExit(f"unknown {what} {bad}; choose from {list(allowed)}")
    return items


def parse_max_images(text: str | None, sets: list[str]) -> dict[str, str]:
    """``--max-images``: one number for every set, or ``SET=N,...`` (0 = all images)."""
    if not text:
        return {}
    if "=" not in text:
        return dict.fromkeys(sets, str(int(text)))
    out = {}
    for part in text.split(","):
        name, _, n = part.partition("=")
        _csv(name, SETS, "set")
        out[name.strip()] = str(int(n))
    return out


def simulate_exe() -> list[str]:
    """The ``napari-hitl`` command of the running interpreter's environment."""
    exe = Path(sys.executable).parent / "napari-hitl"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("napari-hitl")
    if found:
        return [found]
    return [sys.executable, "-m", "napari_hitl.cli"]


def run_dir(out: Path, set_name: str, model: str, interaction: str) -> Path:
    """Folder of one run."""
    return out / set_name / f"{model}-{interaction}"


def build_command(
    cache: Path,
    set_name: str,
    model: str,
    interaction: str,
    iterations: int,
    dest: Path,
    max_images: dict[str, str],
    extra: list[str],
) -> list[str]:
    """The ``napari-hitl simulate`` command line of one run."""
    opts = dict(SET_OPTIONS[set_name])
    if set_name in max_images:
        n = max_images[set_name]
        if n == "0":
            opts.pop("--max-images", None)
        else:
            opts["--max-images"] = n
    cmd = [
        *simulate_exe(),
        "simulate",
        "--images",
        str(cache / set_name / "images"),
        "--masks",
        str(cache / set_name / "masks"),
        "--out",
        str(dest),
        "--model",
        model,
        "--interaction",
        interaction,
        "--iterations",
        str(iterations),
    ]
    for k, v in opts.items():
        cmd += [k, v]
    return cmd + extra


def run_one(cmd: list[str], dest: Path) -> tuple[int, float]:
    """Run one simulation, logging to ``dest/simulate.log``; return (exit code, wall seconds)."""
    dest.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with (dest / "simulate.log").open("w") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    wall = time.perf_counter() - t0
    (dest / "run.json").write_text(
        json.dumps({"command": cmd, "returncode": rc, "wall_seconds": round(wall, 1)}, indent=2)
    )
    return rc, wall


# --------------------------------------------------------------------------- summary


def _finite(values: list[Any]) -> list[float]:
    """The finite numbers among ``values`` (NaN and None dropped)."""
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _mean(values: list[Any]) -> float:
    """Mean of the finite values; NaN when there are none."""
    v = _finite(values)
    return sum(v) / len(v) if v else float("nan")


def summarize_report(report: dict[str, Any], wall: float | None) -> dict[str, Any]:
    """One table row from a ``report.json``."""
    its = report["iterations"]
    last = its[-1]
    miou = _finite([r["test_miou"] for r in its])
    cfg = report["config"]
    return {
        "model": cfg["model"],
        "interaction": cfg["interaction"],
        "iterations": len(its),
        "final_test_miou": last["test_miou"],
        "best_test_miou": max(miou) if miou else float("nan"),
        "final_test_pixel_accuracy": last["test_pixel_accuracy"],
        "final_labeled_fraction": last["labeled_fraction"],
        "final_label_accuracy": last["label_accuracy"],
        "mean_accepted_accuracy": _mean([r["accepted_accuracy"] for r in its]),
        "total_human_pixels": int(last["human_pixels"]),
        "mean_train_seconds": _mean([r["train_seconds"] for r in its]),
        "mean_infer_seconds": _mean([r["infer_seconds"] for r in its]),
        "wall_seconds": wall if wall is not None else float("nan"),
    }


def collect(out: Path, sets: list[str]) -> dict[str, dict[str, Any]]:
    """All finished runs under ``out`` for ``sets``: {set: {"rows": [...], "reports": {...}}}."""
    result: dict[str, dict[str, Any]] = {}
    for s in sets:
        rows, reports, info = [], {}, {}
        for model in MODELS:
            for inter in INTERACTIONS:
                d = run_dir(out, s, model, inter)
                rp = d / "report.json"
                if not rp.exists():
                    continue
                rep = json.loads(rp.read_text())
                wall = None
                if (d / "run.json").exists():
                    wall = json.loads((d / "run.json").read_text()).get("wall_seconds")
                rows.append(summarize_report(rep, wall))
                reports[f"{model} / {inter}"] = rep
                cfg = rep["config"]
                info = {
                    "n_pool": cfg.get("n_pool"),
                    "n_test": cfg.get("n_test"),
                    "classes": cfg.get("classes"),
                    "seed_images": cfg.get("seed_images"),
                    "scribble_fraction": cfg.get("scribble_fraction"),
                    "max_images": cfg.get("max_images"),
                    "threshold": cfg.get("threshold"),
                }
        if rows:
            result[s] = {"info": info, "rows": rows, "reports": reports}
    return result


def _fmt(v: Any, spec: str) -> str:
    """Format a table cell; missing or non-finite values become a dash."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return format(v, spec)


def write_markdown(summary: dict[str, dict[str, Any]], path: Path) -> None:
    """``summary.md``: one table per set, rows = model x interaction."""
    lines = ["# napari-hitl simulate benchmark summary", ""]
    lines.append(
        "Generated by `benchmarks/run_simulations.py`. mIoU / pixel accuracy on the held-out test "
        "images; labeled fraction and label accuracy on the pool; `mean accepted acc` is the "
        "share of accepted pixels (with ground truth) that were right, averaged over iterations."
    )
    lines.append("")
    for s, block in summary.items():
        info = block["info"]
        lines.append(f"## {s}")
        lines.append("")
        lines.append(
            f"pool {info['n_pool']} / test {info['n_test']} images; classes {info['classes']}; "
            f"seed images {info['seed_images']}; scribble fraction {info['scribble_fraction']}; "
            f"max images {info['max_images']}; threshold {info['threshold']}"
        )
        lines.append("")
        head = ["model", "interaction", "iters", *[c[0] for c in COLUMNS]]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join(["---"] * 3 + ["---:"] * len(COLUMNS)) + "|")
        for r in block["rows"]:
            cells = [r["model"], r["interaction"], str(r["iterations"])]
            cells += [_fmt(r[key], spec) for _, key, spec in COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines.append(f"![{s} curves]({s}_curves.png)")
        lines.append("")
    path.write_text("\n".join(lines))


def plot_set(name: str, reports: dict[str, dict[str, Any]], path: Path) -> None:
    """``<set>_curves.png``: test mIoU and labeled fraction per iteration for all runs of a set."""
    from napari_hitl.core.evaluation.curves import plot_curves

    colors = {"unet": "tab:blue", "patch-cnn": "tab:orange", "rf": "tab:green"}
    dashes = {"none": "-", "oracle": "--"}
    reps = list(reports.values())
    plot_curves(
        reps,
        path,
        labels=list(reports),
        keys=[("test_miou", "test mIoU"), ("labeled_fraction", "labeled fraction (pool)")],
        title_prefix=f"{name}: ",
        styles=[
            {
                "color": colors.get(r["config"]["model"]),
                "linestyle": dashes.get(r["config"]["interaction"], "-"),
            }
            for r in reps
        ],
    )


def write_summary(out: Path, sets: list[str]) -> dict[str, dict[str, Any]]:
    """Write ``summary.json``, ``summary.md`` and ``<set>_curves.png`` from the reports found."""
    summary = collect(out, sets)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(
        json.dumps(
            {s: {"info": b["info"], "rows": b["rows"]} for s, b in summary.items()},
            indent=2,
            allow_nan=True,
        )
    )
    write_markdown(summary, out / "summary.md")
    for s, block in summary.items():
        plot_set(s, block["reports"], out / f"{s}_curves.png")
    return summary


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"default {DEFAULT_CACHE}")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default benchmarks/results")
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--interactions", default=",".join(INTERACTIONS))
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument(
        "--max-images",
        help="override the per-set defaults: N for all sets or SET=N,... (0 = all images)",
    )
    ap.add_argument("--threads", type=int, help="torch threads passed to simulate")
    ap.add_argument("--seed", type=int, help="random seed passed to simulate")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    ap.add_argument("--force", action="store_true", help="rerun runs that have a report.json")
    ap.add_argument("--summarize-only", action="store_true", help="only rewrite the summary")
    args = ap.parse_args(argv)

    sets = _csv(args.sets, SETS, "sets")
    models = _csv(args.models, MODELS, "models")
    inters = _csv(args.interactions, INTERACTIONS, "interactions")
    cache, out = args.cache.expanduser(), args.out.expanduser()
    max_images = parse_max_images(args.max_images, sets)
    extra: list[str] = []
    if args.threads is not None:
        extra += ["--threads", str(args.threads)]
    if args.seed is not None:
        extra += ["--seed", str(args.seed)]

    failed: list[str] = []
    if not args.summarize_only:
        for s in sets:
            if not args.dry_run and not (cache / s / "images").is_dir():
                print(f"{s}: {cache / s} is missing; run benchmarks/prepare_data.py first")
                failed.append(s)
                continue
            for model in models:
                for inter in inters:
                    dest = run_dir(out, s, model, inter)
                    cmd = build_command(
                        cache, s, model, inter, args.iterations, dest, max_images, extra
                    )
                    tag = f"{s} {model}/{inter}"
                    if (dest / "report.json").exists() and not args.force:
                        print(f"{tag}: skipped ({dest / 'report.json'} exists)")
                        continue
                    if args.dry_run:
                        print(" ".join(cmd))
                        continue
                    print(f"{tag}: running …", flush=True)
                    rc, wall = run_one(cmd, dest)
                    if rc != 0:
                        failed.append(tag)
                        log = (dest / "simulate.log").read_text().strip().splitlines()
                        print(f"{tag}: FAILED (exit {rc}, {wall:.0f} s): {log[-1] if log else ''}")
                    else:
                        print(f"{tag}: done in {wall:.0f} s", flush=True)
    if args.dry_run:
        return 0
    summary = write_summary(out, list(SETS))  # every finished run under OUT, not only --sets
    print(f"wrote {out / 'summary.json'}, {out / 'summary.md'} and {len(summary)} curve plots")
    if failed:
        print(f"failed: {failed}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
