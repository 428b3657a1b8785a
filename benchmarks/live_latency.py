"""Live mode: how long after a stroke does the prediction of the view refresh?

The issue's target: within about 2 s on a 2-core machine for a 512 × 512 view, without blocking
painting. This drives :func:`napari_hitl.core.loop.live.live_training` in a worker thread exactly as
the widget does, posts a new stroke (a few more pixels of the ground truth) every 1.5–4 s from
the main thread, and measures, for each stroke, the time until an update that has seen it
arrives. The baseline in the same run is one ordinary iteration (Train, then Infer & filter of the
whole image), which is what a person waits for without live mode.

    .venv/bin/python benchmarks/live_latency.py [--size 1024] [--view 512] [--strokes 12]
        [--novelty-gate 0] [--batch-size N --patch E]

``--batch-size`` / ``--patch``: the U-Net's training crops per step and their edge, for the
baseline and the live rounds alike (default: ``TrainConfig``'s, 32 crops of 8²).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="image edge (px)")
    parser.add_argument("--view", type=int, default=512, help="visible box edge (px)")
    parser.add_argument("--strokes", type=int, default=12)
    parser.add_argument("--round-steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--novelty-gate", type=float, default=0.0, help="TrainConfig.novelty_gate (0 = off)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="TrainConfig.batch_size (default: its own)"
    )
    parser.add_argument(
        "--patch", type=int, default=None, help="TrainConfig.patch (default: its own)"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    crops = {k: v for k, v in (("batch_size", args.batch_size), ("patch", args.patch)) if v}

    import torch

    from napari_hitl.core.evaluation.scribbles import sparse_scribbles
    from napari_hitl.core.learning.net import TrainConfig
    from napari_hitl.core.loop import predict_project_image, train_project
    from napari_hitl.core.loop.live import LiveInbox, LiveSettings, LiveUpdate, live_training
    from napari_hitl.core.progress import CancelToken, run_to_end
    from napari_hitl.core.sample.store import build_sample_store
    from napari_hitl.core.store import PROVENANCE_HUMAN

    rng = np.random.default_rng(args.seed)
    tmp = Path(tempfile.mkdtemp())
    store = build_sample_store(tmp / "p.zarr", shape=(args.size, args.size))
    gt = store.read_derived("sample", "ground_truth")
    labels = sparse_scribbles(gt, 0.005, seed=args.seed)
    store.write_labels("sample", labels)

    def config() -> TrainConfig:
        return TrainConfig(novelty_gate=args.novelty_gate, **crops)

    # baseline: one ordinary iteration, as without live mode (warm: a model exists already)
    run_to_end(train_project(store, config()))
    t0 = time.perf_counter()
    run_to_end(train_project(store, config()))
    run_to_end(predict_project_image(store, "sample"))
    baseline = time.perf_counter() - t0

    settings = LiveSettings(idle_rounds=10**6)
    if args.round_steps:
        settings.round_steps = args.round_steps
    inbox = LiveInbox()
    human = lambda a: np.where(a > 0, PROVENANCE_HUMAN, 0).astype(np.uint16)  # noqa: E731
    inbox.post_labels(labels, human(labels))
    o = (args.size - args.view) // 2
    inbox.set_view((o, o + args.view, o, o + args.view))
    updates: queue.Queue = queue.Queue()
    token = CancelToken()

    def worker() -> None:
        job = live_training(store, "sample", inbox, config(), settings, cancel=token)
        try:
            for item in job:
                if isinstance(item, LiveUpdate):
                    updates.put((time.perf_counter(), item))
        except Exception as exc:  # report and end
            updates.put((time.perf_counter(), exc))

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    seen: list[tuple[float, LiveUpdate]] = []

    def drain(until: float) -> None:
        while time.perf_counter() < until:
            with contextlib.suppress(queue.Empty):
                seen.append(updates.get(timeout=0.02))

    drain(time.perf_counter() + 8.0)  # let the first rounds run
    posts = []
    for k in range(args.strokes):
        more = sparse_scribbles(gt, 0.001, seed=args.seed + 100 + k)
        labels = np.where(labels > 0, labels, more).astype(np.uint16)
        version = inbox.post_labels(labels, human(labels))
        posts.append((time.perf_counter(), version))
        drain(time.perf_counter() + float(rng.uniform(1.5, 4.0)))
    drain(time.perf_counter() + 5.0)
    token.cancel()
    thread.join(30)

    latencies = []
    rounds = [u.seconds for _t, u in seen if isinstance(u, LiveUpdate)]
    for t_post, version in posts:
        after = [t for t, u in seen if isinstance(u, LiveUpdate) and u.labels_version >= version]
        if after:
            latencies.append(min(after) - t_post)
    lat = np.array(latencies)
    result = {
        "image": args.size,
        "view": args.view,
        "threads": torch.get_num_threads(),
        "round_steps": settings.round_steps,
        "batch_size": config().batch_size,
        "patch": config().patch,
        "strokes": len(posts),
        "refreshed": len(latencies),
        "latency_median_s": float(np.median(lat)),
        "latency_p90_s": float(np.percentile(lat, 90)),
        "latency_max_s": float(lat.max()),
        "round_median_s": float(np.median(rounds)),
        "baseline_iteration_s": baseline,
        "median_vs_baseline": float(np.median(lat) / baseline),
    }
    print(
        f"live mode, {args.view}² view of a {args.size}² image, {result['threads']} threads, "
        f"{settings.round_steps} steps/round: stroke → refreshed view median "
        f"{result['latency_median_s']:.2f} s, p90 {result['latency_p90_s']:.2f} s, max "
        f"{result['latency_max_s']:.2f} s ({len(latencies)}/{len(posts)} strokes); round "
        f"{result['round_median_s']:.2f} s; one Train + Infer iteration without live mode "
        f"{baseline:.2f} s (ratio {result['median_vs_baseline']:.2f})"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
