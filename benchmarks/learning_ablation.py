"""Ablation of the learning engine's training aids: the simulated user (interaction none) with the
U-Net and each aid switched on alone, beside the default and ``rf`` in the same run.

Usage (from the repository root, after ``benchmarks/prepare_data.py``)::

    .venv/bin/python -u benchmarks/learning_ablation.py SET VARIANT [SEED] [THREADS]
    .venv/bin/python benchmarks/learning_ablation.py --summarize

Variants: ``none`` (the default U-Net), ``rf`` (the forest), ``prop<W>`` (strokes spread to pure
superpixels at weight W, ``TrainConfig.propagate_weight``), ``potts<W>`` (relaxed Potts loss at
weight W, ``TrainConfig.potts_weight``), ``shrink<L>`` (``TrainConfig.warm_shrink``),
``mw<W>`` (``TrainConfig.machine_weight``), ``p<E>b<N>s<F>w<W>`` (U-Net crop edge E, N crops
per step, F fresh and W warm steps; suffixes above may follow), ``long`` (160/80 steps; its
recorded runs used the former 64² crops — with today's 16² crops it equals the default), ``pbn``
(BatchNorm statistics re-estimated after training, ``TrainConfig.precise_bn``), ``tta``
(flip test-time augmentation, ``TrainConfig.tta``), a suffix
``-brier`` or ``-nll`` (``TrainConfig.calibration``, for any model, e.g. ``rf-brier``) and ``bank``
(a probe of the filter-bank front end before it is built into the network: the 84 features of
:class:`~napari_hitl.core.learning.filter_bank.FilterBank` — σ 1–8, on the first 3 principal
components for more than 3 bands — computed on each whole image with reflect borders and
appended to its bands). One JSON line per run goes to ``benchmarks/results/learning/results.jsonl``;
``--summarize`` prints the table (mean over seeds of the final test mIoU and of the mean over the
10 iterations — the iterations jump by ±0.05, so the mean over them is the steadier figure).
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run_simulations import SET_OPTIONS  # noqa: E402

CACHE = Path("~/.cache/napari-hitl/bench-data").expanduser()
RESULTS = HERE / "results" / "learning" / "results.jsonl"


def _bank_features(samples: list) -> list:
    import torch

    from napari_hitl.core.evaluation.simulate import Sample
    from napari_hitl.core.learning.filter_bank import FilterBank, fit_projection

    flat = [s.bands.reshape(s.bands.shape[0], -1)[:, ::97] for s in samples]
    allb = np.concatenate(flat, 1).T.astype(np.float32)
    mu, sd = allb.mean(0), allb.std(0) + 1e-6
    proj = fit_projection((allb - mu) / sd, 3) if allb.shape[1] > 3 else None
    out = []
    for s in samples:
        z = (s.bands.astype(np.float32) - mu[:, None, None]) / sd[:, None, None]
        bank = FilterBank(z.shape[0], projection=proj, padding="reflect")
        with torch.no_grad():
            f = bank(torch.from_numpy(z)[None])[0].numpy()
        out.append(Sample(s.name, np.concatenate([s.bands.astype(np.float32), f]), s.truth))
    return out


def run(set_name: str, variant: str, seed: int, threads: int) -> dict:
    """One simulate run of ``variant``; appends its line to the results."""
    import torch

    from napari_hitl.core.evaluation.simulate import SimulationConfig, load_image_folder, simulate
    from napari_hitl.core.progress import run_to_end

    torch.set_num_threads(threads)
    opts = SET_OPTIONS[set_name]
    mi = int(opts["--max-images"]) if "--max-images" in opts else None
    samples = load_image_folder(CACHE / set_name / "images", CACHE / set_name / "masks", mi)
    if variant == "bank":
        samples = _bank_features(samples)
    if variant.endswith(":fit"):  # an ensemble whose weights are fitted on held-out strokes
        from napari_hitl.core.learning import ensemble

        ensemble.DEFAULT_WEIGHTING = "fit"
    model = variant.removesuffix(":fit").removesuffix("-brier").removesuffix("-nll")
    cfg = SimulationConfig(
        model=model if model in ("rf", "patch-cnn") or "+" in model else "unet",
        iterations=10,
        seed=seed,
        seed_images=int(opts["--seed-images"]),
        scribble_fraction=float(opts["--scribble-fraction"]),
        max_images=mi,
    )
    for key, field in (
        ("potts", "potts_weight"),
        ("prop", "propagate_weight"),
        ("shrink", "warm_shrink"),
        ("mw", "machine_weight"),
    ):
        m = re.search(key + r"([0-9.]+)", variant)
        if m:
            setattr(cfg.train, field, float(m.group(1)))
    m = re.match(r"p(\d+)b(\d+)s(\d+)w(\d+)", variant)
    if m:  # U-Net crop edge, crops per batch, fresh and warm steps
        cfg.train.patch, cfg.train.batch_size, cfg.train.steps, cfg.train.warm_steps = map(
            int, m.groups()
        )
    if "long" in variant:
        cfg.train.steps, cfg.train.warm_steps = 160, 80
    if "pbn" in variant:
        cfg.train.precise_bn = True
    if "tta" in variant:
        cfg.train.tta = True
    for objective in ("brier", "nll"):
        if variant.endswith("-" + objective):
            cfg.train.calibration = objective
    t0 = time.perf_counter()
    report = run_to_end(simulate(samples, cfg))
    its, summary = report["iterations"], report["summary"]
    out = {
        "set": set_name,
        "variant": variant,
        "seed": seed,
        "miou": [round(r["test_miou"], 4) for r in its],
        "labeled": round(its[-1]["labeled_fraction"], 3),
        "label_acc": round(its[-1]["label_accuracy"], 3),
        "labeled_curve": [round(r["labeled_fraction"], 4) for r in its],
        "accepted": summary["accepted_pixels"],
        # pixel-weighted share of accepted pixels that are right, over all iterations
        "accepted_accuracy": round(summary["accepted_accuracy"], 4),
        "wall": round(time.perf_counter() - t0, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as fh:
        fh.write(json.dumps(out) + "\n")
    return out


def summarize() -> str:
    """Markdown table: per set and variant, seeds, final and mean-over-iterations mIoU."""
    runs: dict[tuple[str, str], dict[int, dict]] = {}
    for line in RESULTS.read_text().splitlines():  # a rerun of a seed replaces it
        r = json.loads(line)
        runs.setdefault((r["set"], r["variant"]), {})[r["seed"]] = r
    rows = {key: list(by_seed.values()) for key, by_seed in runs.items()}
    out = [
        "| set | variant | seeds | final mIoU | mean mIoU over it. | labeled (final) | "
        "label acc (final) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for (s, v), rs in sorted(rows.items()):
        out.append(
            f"| {s} | {v} | {len(rs)} | {np.mean([r['miou'][-1] for r in rs]):.3f} | "
            f"{np.mean([np.mean(r['miou']) for r in rs]):.3f} | "
            f"{np.mean([r['labeled'] for r in rs]):.2f} | "
            f"{np.mean([r['label_acc'] for r in rs]):.3f} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    if sys.argv[1:] == ["--summarize"]:
        print(summarize())
    else:
        args = sys.argv[1:]
        res = run(args[0], args[1], int(args[2]) if len(args) > 2 else 0,
                  int(args[3]) if len(args) > 3 else 2)  # fmt: skip
        print(json.dumps(res), flush=True)
