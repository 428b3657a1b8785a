"""``napari-hitl`` commands over the project store itself: import, info, export, classes,
sample."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_hitl.cli.common import (
    add_command,
    add_json_option,
    parse_indices,
    print_progress,
    split_list,
)
from napari_hitl.core.choices import SEED_HELP
from napari_hitl.core.errors import HitlError
from napari_hitl.core.text import terminal_safe


# --------------------------------------------------------------------------- import
def cmd_import(args: argparse.Namespace) -> int:
    """Import images into a project store (created if missing)."""
    # All or nothing: every file, mask and option is read and checked before the store changes;
    # the images are then written aside and moved into place together (core.store's
    # import_rasters), so a failure leaves the store as it was and no new store behind.
    from napari_hitl.core.io.rasters import (
        RASTER_SUFFIXES,
        add_height_band,
        read_mask,
        read_raster,
        select_bands,
        split_axis,
        stack_rasters,
    )
    from napari_hitl.core.progress import run_to_end
    from napari_hitl.core.store import ImportItem, import_rasters
    from napari_hitl.core.store.classes import parse_classes

    if args.discard_labels and not args.overwrite:
        raise HitlError(
            "--discard-labels goes with --overwrite (it allows replacing labeled images)"
        )
    sources: list[Path] = []
    for s in args.sources:
        p = Path(s)
        if p.is_dir() and p.suffix.lower() != ".zarr":
            sources.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in RASTER_SUFFIXES))
        else:
            sources.append(p)
    if not sources:
        raise HitlError("no image files to import")
    kw = {"layout": args.layout, "axes": args.axes}
    if args.stack:
        items = [
            (args.name or sources[0].stem, stack_rasters([read_raster(s, **kw) for s in sources]))
        ]
    else:
        if args.name and len(sources) > 1:
            raise HitlError("--name names one image; with several files drop it or add --stack")
        items = [(args.name or s.stem, read_raster(s, **kw)) for s in sources]
    names = split_list(args.band_names)
    bands = split_list(args.bands)
    prepared = []
    for name, raster in items:
        if names:
            if len(names) != raster.n_bands:
                raise HitlError(
                    f"--band-names gives {len(names)} names for {raster.n_bands} bands of {name}"
                )
            raster.band_names = names
        if bands:
            raster = select_bands(raster, bands)
        pieces = split_axis(raster, args.split, name) if args.split else [(name, raster)]
        if args.dsm:
            height = read_raster(args.dsm)
            pieces = [(n, add_height_band(r, height, name=args.dsm_name)) for n, r in pieces]
        prepared.extend(pieces)
    labels = None  # the same labels for every image
    if args.labels:
        labels = read_mask(args.labels, shape=prepared[0][1].spatial_shape)
        if args.label_map:
            labels = remap_labels(labels, args.label_map)
    classes = parse_classes(args.classes, "--classes") if args.classes else None
    result = run_to_end(
        import_rasters(
            args.store,
            [ImportItem(name, raster, labels) for name, raster in prepared],
            classes=classes,
            rgb=parse_indices(args.rgb, "--rgb"),
            overwrite=args.overwrite,
            discard_labels=args.discard_labels,
        ),
        print_progress,
    )
    for info in result.images:
        gone = result.discarded.get(info.name)
        if gone:
            print(f"replaced {terminal_safe(info.name)}: discarded {gone} human-labeled pixels")
        print(
            terminal_safe(
                f"imported {info.name}: {info.shape[0]} bands {info.band_names}, "
                f"{'x'.join(map(str, info.spatial_shape))} px, {info.dtype}"
                + (f", {info.georef.crs}" if info.georef and info.georef.crs else "")
                + (f", {info.invalid_pixels} invalid px" if info.invalid_pixels else "")
            )
        )
    return 0


def remap_labels(labels, spec: str):
    """Apply ``--label-map`` ("old:new,old:new"; unlisted values unchanged) to a mask."""
    import numpy as np

    pairs = []
    for item in split_list(spec) or []:
        old, sep, new = item.partition(":")
        if not sep or not old.strip().lstrip("-").isdigit() or not new.strip().isdigit():
            raise HitlError(f"--label-map entry {item!r} must look like OLD:NEW (integers)")
        pairs.append((int(old), int(new)))
    out = np.asarray(labels).astype(np.int64)
    result = out.copy()
    for old, new in pairs:
        result[out == old] = new
    return result


# ----------------------------------------------------------------------------- info
def cmd_info(args: argparse.Namespace) -> int:
    """Show what a project store holds."""
    from napari_hitl.core.store import open_store, store_summary

    summary = store_summary(open_store(args.store))
    if args.json:
        print(json.dumps(summary, indent=2))  # JSON escapes control characters itself
        return 0
    print(terminal_safe(f"{summary['path']}  (schema {summary['schema_version']})"))
    print(
        "classes: "
        + (
            ", ".join(f"{c['value']}={terminal_safe(c['name'])}" for c in summary["classes"])
            or "none"
        )
    )
    for im in summary["images"]:
        print(
            f"- {terminal_safe(im['name'])}: {im['axes']} {tuple(im['shape'])} {im['dtype']}; "
            f"bands {terminal_safe(', '.join(im['bands']))}; rgb {im['rgb']}"
            + (
                f"; height band {terminal_safe(im['bands'][im['dsm_band']])}"
                if im["dsm_band"] is not None
                else ""
            )
            + (f"; {terminal_safe(im['crs'])}" if im["crs"] else "")
            + f"; labeled {im['labeled_pixels']} px"
            + (f"; invalid {im['invalid_pixels']} px" if im["invalid_pixels"] else "")
            + (f"; derived: {', '.join(im['derived'])}" if im["derived"] else "")
        )
    return 0


# --------------------------------------------------------------------------- export
def cmd_export(args: argparse.Namespace) -> int:
    """Export labels, predictions, confidence or images."""
    from napari_hitl.core.io.export import export_item
    from napari_hitl.core.store import open_store

    store = open_store(args.store)
    images = store.image_names() if args.all else [args.image]
    if not args.all and not args.image:
        raise HitlError("say which image with --image NAME, or export every image with --all")
    out = Path(args.out)
    for name in images:
        for what in args.what:
            target = out / f"{name}_{what}.{args.format}" if args.all or len(args.what) > 1 else out
            written = export_item(store, name, what, target)
            print(terminal_safe(f"wrote {written}"))
    return 0


# -------------------------------------------------------------------------- classes
def cmd_classes(args: argparse.Namespace) -> int:
    """Show or set class names and colours."""
    from napari_hitl.core.store import open_store
    from napari_hitl.core.store.classes import parse_classes

    classes = parse_classes(args.set, "--set") if args.set is not None else None
    store = open_store(args.store, "a" if classes is not None else "r")
    if classes is not None:
        store.set_classes(classes)
    for c in store.classes:
        print(f"{c.value}\t{terminal_safe(c.name)}\t{c.color}")
    return 0


# ---------------------------------------------------------------------- sample/demo
def cmd_sample(args: argparse.Namespace) -> int:
    """Write the synthetic 14-band + DSM sample scene to a store."""
    from napari_hitl.core.sample.store import build_sample_store

    store = build_sample_store(
        args.store,
        shape=(args.size, args.size),
        seed=args.seed,
        n_images=args.images,
        overwrite=args.overwrite,
    )
    print(f"wrote {store.path} with {len(store.image_names())} image(s)")
    return 0


def add_store_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``import``, ``info``, ``export``, ``classes`` and ``sample``."""
    p = add_command(sub, "import", cmd_import)
    p.add_argument(
        "sources", nargs="+", help="image files (TIFF/GeoTIFF, PNG, JPEG, .npy) or folders"
    )
    p.add_argument("--name", help="image name in the store (default: file stem)")
    p.add_argument("--stack", action="store_true", help="stack the files as bands of ONE image")
    p.add_argument(
        "--layout",
        choices=["auto", "band-first", "band-last"],
        default="auto",
        help="where the bands are in 3-D arrays without axis metadata",
    )
    p.add_argument("--axes", help="axis letters of the stored array, e.g. TYXC or CZYX")
    p.add_argument("--split", choices=["T", "Z", "t", "z"], help="one image per T (or Z) index")
    p.add_argument(
        "--bands", help="keep and reorder bands: indices (0-based) or names, comma-separated"
    )
    p.add_argument("--band-names", help="comma-separated names for the source bands")
    p.add_argument(
        "--dsm",
        help="a one-band height raster (DSM/DEM) added as the last band; "
        "read with its own layout (--axes/--layout apply to the images only)",
    )
    p.add_argument("--dsm-name", default="DSM", help="name of the height band (default DSM)")
    p.add_argument("--rgb", help="band indices of the RGB composite, e.g. 3,2,1")
    p.add_argument(
        "--labels",
        help="a label mask (0 = unlabeled) imported as human labels of "
        "every imported image (e.g. one map for all dates of a time series)",
    )
    p.add_argument(
        "--label-map",
        help='recode mask values, e.g. "0:1,255:2" (0 = unlabeled '
        "after recoding; -1:0 turns a -1 nodata into unlabeled)",
    )
    p.add_argument("--classes", help="class names for label values 1, 2, ... (comma-separated)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace images of the same name (refused for an image with human labels unless "
        "--discard-labels)",
    )
    p.add_argument(
        "--discard-labels",
        action="store_true",
        help="with --overwrite: also replace images that have human labels (says how many "
        "human-labeled pixels are discarded)",
    )

    p = add_command(sub, "info", cmd_info)
    add_json_option(p, "machine-readable output")

    p = add_command(sub, "export", cmd_export)
    p.add_argument("--image", help="image name")
    p.add_argument("--all", action="store_true", help="every image (OUT is a folder)")
    p.add_argument(
        "--what",
        nargs="+",
        default=["labels"],
        help="labels, provenance, image, or a derived array (prediction, confidence...)",
    )
    p.add_argument("--out", required=True, help="output file (.tif/.png/.zarr/.npy) or folder")
    p.add_argument(
        "--format",
        default="tif",
        choices=["tif", "png", "zarr", "npy"],
        help="file format when OUT is a folder",
    )

    p = add_command(sub, "classes", cmd_classes)
    p.add_argument("--set", help='e.g. "vegetation:#2ca02c,ground,road:#808080"')

    p = add_command(sub, "sample", cmd_sample)
    p.add_argument("--size", type=int, default=512, help="scene edge in pixels (default 512)")
    p.add_argument("--images", type=int, default=1, help="number of sample scenes (default 1)")
    p.add_argument("--seed", type=int, default=0, help=SEED_HELP)
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
