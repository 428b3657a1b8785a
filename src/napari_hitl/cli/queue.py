"""The active-learning commands of ``napari-hitl``: ``rank``, ``done``, ``ask``, ``suspects``.

They sit over :mod:`napari_hitl.core.active.review_queue`, like the queue widget in napari.
"""

from __future__ import annotations

import argparse

from napari_hitl.cli.common import add_command, add_json_option
from napari_hitl.core.choices import (
    DEFAULT_THRESHOLD,
    IMAGE_HELP,
    SEED_HELP,
    STRATEGIES,
)
from napari_hitl.core.text import terminal_safe


def _ints(text: str | None) -> list[int] | None:
    return [int(t) for t in text.split(",") if t.strip()] if text else None


def cmd_rank(args: argparse.Namespace) -> int:
    """Active learning: rank images/slices/tiles for the human (and the machine).

    Scores every image (stack slice, tile) with the current model and prints the queue: the
    hardest items for the human, the easiest share gamma for the machine. Strategies: hise (low
    local consistency tau_l first), entropy, margin, kcenter (diversity), gmm (2-component GMM
    on confidence maps), random.
    """
    from napari_hitl.cli.common import image_names, print_progress
    from napari_hitl.core.active.review_queue import machine_annotate, rank_project
    from napari_hitl.core.active.strategies import Schedule
    from napari_hitl.core.progress import run_to_end
    from napari_hitl.core.store import open_store

    store = open_store(args.store, "a")
    schedule = Schedule(
        beta0=args.beta0, dbeta=args.dbeta, gamma0=args.gamma0, dgamma=args.dgamma,
        delta=args.delta,
    )  # fmt: skip
    ranking = run_to_end(
        rank_project(
            store,
            args.strategy,
            tile=args.tile,
            schedule=schedule,
            t=args.t,
            background=_ints(args.background),
            names=image_names(args.images),
            seed=args.seed,
        ),
        print_progress,
    )
    csv = ranking.write_csv(args.csv) if args.csv else None
    records = machine_annotate(store, ranking, schedule.delta) if args.annotate else None
    if args.json:
        from napari_hitl.cli.common import print_json

        out = {
            "strategy": ranking.strategy,
            "iteration": ranking.iteration,
            "beta": ranking.beta,
            "gamma": ranking.gamma,
            "tile": ranking.tile,
            "items": ranking.rows(),
        }
        if csv is not None:
            out["csv"] = str(csv)
        if records is not None:
            out["annotated"] = {name: r.count for name, r in records.items()}
        print_json(out)
        return 0
    print(
        f"{len(ranking.items)} items ranked by {ranking.strategy} (model iteration "
        f"{ranking.iteration}; beta {ranking.beta:.3f}, gamma {ranking.gamma:.3f}): "
        f"{len(ranking.by_route('human'))} for the human, {len(ranking.by_route('machine'))} "
        f"for the machine, {len(ranking.by_route('done'))} done"
    )
    print(f"{'rank':>4}  {'route':7}  {'tau_l':>6}  {'uncert':>6}  {'entropy':>7}  item")
    for it in ranking.items[: args.top or None]:
        s = it.stats
        print(
            f"{it.rank + 1:4d}  {it.route:7}  {s.tau_l:6.3f}  {s.uncertain_fraction:6.3f}  "
            f"{s.mean_entropy:7.3f}  {it.key}"
        )
    if csv is not None:
        print(f"wrote {csv}")
    if records is not None:
        total = sum(r.count for r in records.values())
        print(f"machine annotation at delta {schedule.delta}: {total} pixels in {len(records)} "
              "images (napari-hitl undo STORE --image NAME reverts one)")  # fmt: skip
    return 0


def cmd_done(args: argparse.Namespace) -> int:
    """Mark queue items done (keys as printed by rank)."""
    from napari_hitl.core.active.review_queue import mark_done
    from napari_hitl.core.store import open_store

    store = open_store(args.store, "a")
    now = mark_done(store, args.items, done=not args.reopen)
    print(f"{len(now)} items done")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    """The pixels the model asks about: smallest margin between two classes."""
    from napari_hitl.core.active.review_queue import project_questions
    from napari_hitl.core.store import open_store

    store = open_store(args.store, "a")
    names = {c.value: terminal_safe(c.name) for c in store.classes}
    qs = project_questions(
        store, args.image, args.n, index=args.slice, min_distance=args.min_distance
    )
    if args.json:
        from dataclasses import asdict

        from napari_hitl.cli.common import print_json

        print_json({"image": args.image, "questions": [asdict(q) for q in qs]})
        return 0
    for i, q in enumerate(qs, 1):
        print(
            f"{i:2d}. row {q.row}, col {q.col}: margin {q.margin:.3f} between "
            f"{names.get(q.first, q.first)} ({q.first}) and {names.get(q.second, q.second)} "
            f"({q.second})"
        )
    if not qs:
        print(f"{args.image}: no unlabeled pixel left to ask about")
    return 0


def cmd_suspects(args: argparse.Namespace) -> int:
    """Human labels the model contradicts with confidence (likely slips)."""
    from napari_hitl.cli.common import image_names
    from napari_hitl.core.active.review_queue import project_suspects
    from napari_hitl.core.io.export import write_csv
    from napari_hitl.core.store import open_store

    store = open_store(args.store, "a")
    names = {c.value: terminal_safe(c.name) for c in store.classes}
    found = project_suspects(store, image_names(args.images), args.threshold, args.min_pixels)
    rows = [s.to_json() for s in found]
    csv = write_csv(rows, args.csv) if args.csv else None
    if args.json:
        from napari_hitl.cli.common import print_json

        print_json({"threshold": args.threshold, "suspects": rows,
                    "csv": None if csv is None else str(csv)})  # fmt: skip
        return 0
    print(f"{len(found)} suspect label patches (human label contradicted at confidence >= "
          f"{args.threshold})")  # fmt: skip
    for s in found[: args.top or None]:
        where = s.image if s.index is None else f"{s.image}[{s.index}]"
        print(
            f"{where}: {s.pixels} px labeled {names.get(s.label, s.label)}, model says "
            f"{names.get(s.predicted, s.predicted)} ({s.confidence:.3f}); rows {s.box[0]}:"
            f"{s.box[1]}, cols {s.box[2]}:{s.box[3]}"
        )
    if csv is not None:
        print(f"wrote {csv}")
    return 0


def add_queue_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``rank``, ``done``, ``ask`` and ``suspects`` to the ``napari-hitl`` parser."""
    from napari_hitl.cli.common import IMAGES_HELP

    p = add_command(sub, "rank", cmd_rank)
    p.add_argument("--strategy", choices=STRATEGIES, default="hise", help="ranking (default hise)")
    p.add_argument("--tile", type=int, default=None, help="rank tiles of this edge (px)")
    p.add_argument("--images", nargs="+", default=None, help=IMAGES_HELP)
    p.add_argument("--beta0", type=float, default=0.9, help="HISE beta_0 (uncertain below)")
    p.add_argument("--dbeta", type=float, default=0.02, help="beta falls by this per iteration")
    p.add_argument("--gamma0", type=float, default=0.3, help="machine share of the items")
    p.add_argument("--dgamma", type=float, default=0.1, help="gamma grows by this per iteration")
    p.add_argument(
        "--delta",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"pseudo-label threshold (default {DEFAULT_THRESHOLD})",
    )
    p.add_argument("--t", type=int, default=None, help="schedule iteration (default: model's)")
    p.add_argument("--background", default=None, help="class values that are not objects")
    p.add_argument("--top", type=int, default=20, help="rows to print (0: all)")
    p.add_argument("--csv", default=None, help="write the difficulty report here")
    p.add_argument(
        "--annotate", action="store_true", help="push pseudo-labels above delta (machine items)"
    )
    p.add_argument("--seed", type=int, default=0, help=SEED_HELP)
    add_json_option(p)

    p = add_command(sub, "done", cmd_done)
    p.add_argument("items", nargs="+", help="item keys as rank prints them")
    p.add_argument("--reopen", action="store_true", help="mark them not done again")

    p = add_command(sub, "ask", cmd_ask)
    p.add_argument("--image", required=True, help=IMAGE_HELP)
    p.add_argument("-n", type=int, default=5, help="number of questions")
    p.add_argument("--slice", type=int, default=None, help="stack slice")
    p.add_argument("--min-distance", type=float, default=16.0, help="px between questions")
    add_json_option(p)

    p = add_command(sub, "suspects", cmd_suspects)
    p.add_argument("--images", nargs="+", default=None, help=IMAGES_HELP)
    p.add_argument(
        "--threshold", type=float, default=0.9, help="confidence of the contradiction (default 0.9)"
    )
    p.add_argument(
        "--min-pixels", type=int, default=1, help="smallest patch listed, in pixels (default 1)"
    )
    p.add_argument("--top", type=int, default=20, help="rows to print (0: all)")
    p.add_argument("--csv", default=None, help="write the patches to this CSV file")
    add_json_option(p)
