"""``napari-hitl bench``: speed of each model on this machine, against the RF baseline and the
machine's own matrix-multiply rate, measured in one run."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from napari_hitl.core.choices import FILTER_BANK_SIGMAS, MODEL_NAMES
from napari_hitl.core.evaluation.scribbles import sparse_scribbles
from napari_hitl.core.io.bands import robust_stats
from napari_hitl.core.learning.data import make_labeled_image, normalization_from_stats
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.learning.networks import flops_per_pixel
from napari_hitl.core.learning.prediction import predict_normalized
from napari_hitl.core.learning.registry import make_classifier
from napari_hitl.core.progress import run_to_end
from napari_hitl.core.sample.scene import make_sample_scene
from napari_hitl.core.store import PROVENANCE_HUMAN

BANK_OPTION = "bank"  # "unet:bank" in the model list: the U-Net with its filter bank
TARGET_MPX_S = 1.0  # default model, 15 bands, 2 cores
# One warm iteration (train + predict) on 512 x 512: the learning-engine issue's 5 s. The
# former 3 s held with 80 warm steps (1.8 s); 160 learn more and take 3.5 s, as long as `rf`.
TARGET_ITERATION_S = 5.0


def _best_of(fn: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_gflops(n: int = 2048, repeats: int = 3) -> float:
    """Measured float32 matrix-multiply rate (GFLOP/s) with the current torch threads."""
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    a @ b
    seconds = _best_of(lambda: a @ b, repeats)
    return 2 * n**3 / seconds / 1e9


def run_bench(
    models: Sequence[str] = MODEL_NAMES,
    size: int = 1024,
    iter_size: int = 512,
    threads: int | None = None,
    repeats: int = 2,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure every model; returns the table as a dict (also printed through ``log``).

    Per model: seconds of a fresh and of a warm-started training iteration on an
    ``iter_size``² scene with 1 % scribbles, inference Mpx/s on a ``size``² 15-band scene (best of
    ``repeats``), one full warm iteration (train + predict ``iter_size``²), ratios to ``rf``, and
    for the networks the FLOPs per pixel against the measured matmul rate.
    """
    if threads:
        torch.set_num_threads(threads)
    n_threads = torch.get_num_threads()
    big = make_sample_scene((size, size), seed=11)
    small = make_sample_scene((iter_size, iter_size), seed=12)
    norm = normalization_from_stats(list(big.band_names), [[robust_stats(b) for b in big.bands]])
    x_big = norm.apply(big.bands)
    x_small = norm.apply(small.bands)
    scrib = sparse_scribbles(small.ground_truth, 0.01, seed=0)
    image = make_labeled_image(
        "bench", x_small, scrib, np.where(scrib > 0, PROVENANCE_HUMAN, 0), [1, 2, 3, 4, 5], 0.5
    )
    gflops = matmul_gflops()
    log(f"machine: {n_threads} torch threads, float32 matmul {gflops:.0f} GFLOP/s")
    rows: dict[str, dict[str, Any]] = {}
    for name in models:
        # "unet:bank": the U-Net with its filter-bank front end at the default scales
        kind, _, option = name.partition(":")
        if option not in ("", BANK_OPTION) or (option and kind != "unet"):
            raise ValueError(f"unknown model {name!r}; the U-Net's filter bank is unet:bank")
        bank = list(FILTER_BANK_SIGMAS) if option else None
        clf = make_classifier(kind, norm, [1, 2, 3, 4, 5], list(big.class_names))
        cfg = TrainConfig(model=kind, filter_bank=bank)
        t0 = time.perf_counter()
        run_to_end(clf.fit([image], cfg))
        fresh_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_to_end(clf.fit([image], cfg))
        warm_s = time.perf_counter() - t0
        run_to_end(predict_normalized(clf, x_big[:, :256, :256]))  # warm-up
        infer_s = _best_of(lambda c=clf: run_to_end(predict_normalized(c, x_big)), repeats)
        small_infer_s = _best_of(lambda c=clf: run_to_end(predict_normalized(c, x_small)), repeats)
        row: dict[str, Any] = {
            "train_fresh_s": round(fresh_s, 2),
            "train_warm_s": round(warm_s, 2),
            "infer_mpx_s": round(size * size / infer_s / 1e6, 3),
            "iteration_s": round(warm_s + small_infer_s, 2),
        }
        if kind in ("unet", "patch-cnn"):  # one network: its FLOPs against the matmul rate
            # (the filter bank's shifted sums are no convolution modules: not counted)
            net = clf.net  # type: ignore[union-attr]
            fpp = flops_per_pixel(net, x_big.shape[0], size=512)
            achieved = fpp * row["infer_mpx_s"] * 1e6 / 1e9
            row.update(
                flops_per_px=round(fpp),
                achieved_gflops=round(achieved, 1),
                fraction_of_matmul=round(achieved / gflops, 3),
            )
        rows[name] = row
        log(f"{name}: {row}")
    if "rf" in rows:
        base = rows["rf"]
        for row in rows.values():
            row["train_warm_vs_rf"] = round(row["train_warm_s"] / base["train_warm_s"], 3)
            row["infer_vs_rf"] = round(row["infer_mpx_s"] / base["infer_mpx_s"], 2)
    result = {
        "threads": n_threads,
        "matmul_gflops": round(gflops, 1),
        "image": {"infer": [15, size, size], "iteration": [15, iter_size, iter_size]},
        "models": rows,
        "targets": {"infer_mpx_s": TARGET_MPX_S, "iteration_s": TARGET_ITERATION_S},
    }
    default = rows.get("unet")
    if default:
        result["targets_met"] = {
            "infer_mpx_s": default["infer_mpx_s"] >= TARGET_MPX_S,
            "iteration_s": default["iteration_s"] <= TARGET_ITERATION_S,
        }
    return result


def format_table(result: dict[str, Any]) -> str:
    """A Markdown table of :func:`run_bench`'s result."""
    n_it = result["image"]["iteration"][1]
    n_inf = result["image"]["infer"][1]
    lines = [
        f"{result['threads']} threads; float32 matmul {result['matmul_gflops']} GFLOP/s",
        "",
        f"| model | train fresh (s) | train warm (s) | iteration {n_it}² (s) | infer Mpx/s "
        f"({n_inf}², 15 bands) | infer vs rf | FLOP/px | GFLOP/s achieved | of matmul |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, r in result["models"].items():
        lines.append(
            f"| {kind} | {r['train_fresh_s']} | {r['train_warm_s']} | {r['iteration_s']} | "
            f"{r['infer_mpx_s']} | {r.get('infer_vs_rf', '–')}× | {r.get('flops_per_px', '–')} | "
            f"{r.get('achieved_gflops', '–')} | {r.get('fraction_of_matmul', '–')} |"
        )
    if "targets_met" in result:
        t = result["targets"]
        m = result["targets_met"]
        lines += [
            "",
            f"targets (unet, 2 cores): inference ≥ {t['infer_mpx_s']} Mpx/s: "
            f"{'met' if m['infer_mpx_s'] else 'NOT met'}; iteration ≤ {t['iteration_s']} s: "
            f"{'met' if m['iteration_s'] else 'NOT met'}",
        ]
    return "\n".join(lines)
