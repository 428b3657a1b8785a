"""``napari-hitl predict`` for whole images of any size: dask blocks written into the store.

:func:`cmd_predict_batch` is what ``napari-hitl predict STORE`` runs unless ``--slice`` or
``--region`` asks for the in-memory prediction of a part; see
:mod:`napari_hitl.core.loop.batch`.
"""

from __future__ import annotations

import argparse

from napari_hitl.cli.common import chosen_images
from napari_hitl.cli.progress import ProgressPrinter


def add_batch_options(p: argparse.ArgumentParser) -> None:
    """The options of batch prediction (``--chunk``, ``--scheduler``, ``--workers``...)."""
    p.add_argument(
        "--chunk",
        default=None,
        help="block edge in pixels, or ROWS,COLS (default: the model's tile, 1024 for "
        "networks); memory grows with it, not with the image",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        help="address of a dask.distributed scheduler (tcp://host:8786); default: local threads",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="blocks predicted at once on this machine (dask workers, default 1); each "
        "uses --threads torch threads, as everywhere in napari-hitl",
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="forget an unfinished run and predict every block again (default: resume)",
    )
    p.add_argument(
        "--halo-reads",
        choices=("zarr", "dask"),
        default="zarr",
        help="zarr: each block reads its window from the store (default); dask: "
        "dask.array.map_overlap cuts halos from neighbouring blocks, loaded whole",
    )


def cmd_predict_batch(args: argparse.Namespace) -> int:
    """Predict whole images block by block into the store (resumable, local or on a cluster)."""
    import dask.array as da

    from napari_hitl.core.loop import load_state
    from napari_hitl.core.loop.batch import predict_store_image
    from napari_hitl.core.progress import run_to_end
    from napari_hitl.core.store import open_store

    store = open_store(args.store, "a")
    state = load_state(store)
    names = chosen_images(store, args)
    rows = []
    for name in names:
        report = run_to_end(
            predict_store_image(
                store,
                name,
                state,
                chunk=args.chunk or args.tile,
                scheduler=args.scheduler,
                workers=args.workers,
                restart=args.restart,
                halo_reads=args.halo_reads,
            ),
            ProgressPrinter(),
        )
        conf = da.from_zarr(store.derived_array(name, "confidence", action="predict"))
        above = float((conf >= args.threshold).mean().compute())
        done = f"{report.computed} of {report.blocks} blocks computed"
        if report.skipped:
            done += f", {report.skipped} done before"
        rate = f", {report.megapixels_per_second:.2f} Mpx/s" if report.pixels else ""
        rows.append(
            {
                "image": name,
                "blocks": report.blocks,
                "computed": report.computed,
                "skipped": report.skipped,
                "seconds": round(report.seconds, 3),
                "megapixels_per_second": report.megapixels_per_second if report.pixels else None,
                "threshold": args.threshold,
                "share_at_threshold": above,
            }
        )
        if not args.json:
            print(
                f"{name}: {done} in {report.seconds:.1f} s{rate}; {above:.1%} of pixels at "
                f"confidence ≥ {args.threshold}"
            )
    if args.json:
        from napari_hitl.cli.common import print_json

        print_json({"images": rows})
    return 0
