"""The explanation commands of ``napari-hitl``: ``explain`` and ``guide``.

They sit over :mod:`napari_hitl.core.explain.project`, like the *Explain and guide* widget in
napari.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from napari_hitl.cli.common import add_command
from napari_hitl.core.choices import (
    ATTRIBUTION_METHODS,
    IMAGE_HELP,
    REGION_HELP,
    SEED_HELP,
    SUPERPIXEL_METHODS,
)
from napari_hitl.core.text import terminal_safe


def _point(text: str) -> tuple[int, int]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(p.lstrip("-").isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not ROW,COL (two integers)")
    return int(parts[0]), int(parts[1])


def cmd_explain(args: argparse.Namespace) -> int:
    """Grad-CAM and per-band attribution of a class over a region of an image.

    Writes the Grad-CAM map of the project's model for a class (GeoTIFF aligned with the image)
    and prints how much each band supports the class there.
    """
    from napari_hitl.cli.common import print_progress
    from napari_hitl.core.explain.gradcam import Region
    from napari_hitl.core.explain.project import explain_project_image
    from napari_hitl.core.io.export import write_raster
    from napari_hitl.core.progress import run_to_end
    from napari_hitl.core.store import open_store

    store = open_store(args.store, "r")
    method = None if args.attribution == "none" else args.attribution
    exp = run_to_end(
        explain_project_image(
            store,
            args.image,
            args.class_ref,
            region=Region.parse(args.region),
            layer=args.layer,
            index=args.index,
            attribution=method,
            steps=args.steps,
        ),
        print_progress,
    )
    info = store.image_info(args.image)
    cam = exp.cam
    out = write_raster(
        args.out, cam.map, band_names=["grad_cam"], georef=info.georef, band_axis=False
    )
    print(
        f"Grad-CAM of class {exp.class_value} {terminal_safe(exp.class_name)!r} over "
        f"{exp.region.describe()} "
        f"({int(exp.mask.sum())} px) at layer {cam.layer}: peak {cam.peak:.4g}, "
        f"defined on rows {cam.extent[0]}:{cam.extent[1]}, cols {cam.extent[2]}:{cam.extent[3]}"
    )
    print(f"wrote {out}")
    attr = exp.attribution
    if attr is None:
        return 0
    print(
        f"band attribution ({attr.method}): mean log p({terminal_safe(exp.class_name)}) "
        f"{attr.score:.3f}"
        + (f", baseline {attr.baseline_score:.3f}" if attr.method != "occlusion" else "")
    )
    print(f"{'rank':>4}  {'value':>9}  {'share':>6}  band")
    rows = attr.ranking()
    for i, (band, value, share) in enumerate(rows):
        bar = "#" * round(abs(share) * 40)
        print(
            f"{i + 1:4d}  {value:9.4f}  {share:6.1%}  {band:12s} {'-' if value < 0 else ' '}{bar}"
        )
    if args.bands_csv:
        path = Path(args.bands_csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["rank", "band", "value", "share", "method", "class"])
            for i, (band, value, share) in enumerate(rows):
                w.writerow(
                    [i + 1, band, f"{value:.6g}", f"{share:.6g}", attr.method, exp.class_name]
                )
        print(f"wrote {path}")
    if args.bands_out:
        p = write_raster(args.bands_out, attr.maps, band_names=attr.band_names, georef=info.georef)
        print(f"wrote {p} (per-band attribution maps)")
    return 0


def cmd_guide(args: argparse.Namespace) -> int:
    """Steer the model's attention: fine-tune on positive/negative clicks.

    Fine-tunes the project's model with w_g*(loss_pos + loss_neg) + w_c*loss_c: the Grad-CAM
    barycenter moves toward the positive clicks, and the Grad-CAM mass leaves the superpixels
    under the negative clicks. The previous model is kept (--revert). Without --image, the
    click sets confirmed in the GUI are used.
    """
    from napari_hitl.cli.common import print_progress
    from napari_hitl.core.explain.project import (
        ClickSet,
        guide_project,
        load_clicks,
        revert_guidance,
    )
    from napari_hitl.core.explain.steering import SteerConfig
    from napari_hitl.core.progress import run_to_end
    from napari_hitl.core.store import open_store

    store = open_store(args.store, "a")
    if args.revert:
        state = revert_guidance(store)
        print(f"reverted: latest is the model of iteration {state.iteration} again")
        return 0
    if args.image:
        if args.class_ref is None:
            raise ValueError("--class is required with --image")
        sets = [
            ClickSet(
                args.image,
                args.class_ref,
                args.index,
                args.region,
                list(args.positive or []),
                list(args.negative or []),
                True,
            )
        ]
    else:
        sets = [s for s in load_clicks(store) if s.confirmed]
        if not sets:
            raise ValueError(
                "no clicks given (--image NAME --class C --positive ROW,COL / --negative ROW,COL) "
                "and none confirmed in the store"
            )
    config = SteerConfig(
        steps=args.steps, lr=args.lr, w_g=args.wg, w_c=args.wc, layer=args.layer, seed=args.seed
    )
    report, state = run_to_end(
        guide_project(store, sets, config, superpixel=args.superpixel), print_progress
    )
    print(
        f"guided {len(sets)} image(s) in {report.steps} steps ({report.seconds:.1f} s); "
        f"saved as iteration {state.iteration} (revert: napari-hitl guide {args.store} --revert)"
    )
    for name, b, a in zip(report.names, report.before, report.after, strict=True):
        print(
            f"  {name}: barycenter distance {b.distance:.3f} -> {a.distance:.3f}, "
            f"negative share {b.negative_share:.3f} -> {a.negative_share:.3f}, "
            f"mass x{a.mass:.2f}"
        )
    if args.report:
        Path(args.report).write_text(json.dumps(report.to_json(), indent=1))
        print(f"wrote {args.report}")
    return 0


def add_explain_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``explain`` and ``guide`` to the ``napari-hitl`` parser."""
    p = add_command(sub, "explain", cmd_explain)
    p.add_argument("--image", required=True, help=IMAGE_HELP)
    p.add_argument("--class", dest="class_ref", required=True, help="class name or value")
    p.add_argument("--region", default="image", help=REGION_HELP)
    p.add_argument("--index", type=int, default=None, help="stack slice")
    p.add_argument("--layer", default=None, help="Grad-CAM layer (default: per model)")
    p.add_argument(
        "--attribution",
        choices=(*ATTRIBUTION_METHODS, "none"),
        default="integrated",
        help="band attribution method (default integrated gradients)",
    )
    p.add_argument("--steps", type=int, default=8, help="integrated-gradients steps")
    p.add_argument("--out", required=True, help="Grad-CAM output (.tif, .zarr, .npy)")
    p.add_argument("--bands-csv", default=None, help="write the band ranking here")
    p.add_argument("--bands-out", default=None, help="write per-band maps (C, H, W) here")

    p = add_command(sub, "guide", cmd_guide)
    p.add_argument("--image", default=None, help="the image clicked in (default: the only one)")
    p.add_argument("--class", dest="class_ref", default=None, help="class name or value")
    p.add_argument("--region", default="image", help=REGION_HELP)
    p.add_argument("--index", type=int, default=None, help="stack slice")
    p.add_argument("--positive", type=_point, action="append", help="ROW,COL to look at")
    p.add_argument(
        "--negative", type=_point, action="append", help="ROW,COL inside a region to ignore"
    )
    p.add_argument(
        "--superpixel",
        choices=SUPERPIXEL_METHODS,
        default="felzenszwalb",
        help="superpixels the clicks spread over (default felzenszwalb)",
    )
    p.add_argument("--steps", type=int, default=30, help="fine-tuning steps (default 30)")
    p.add_argument("--lr", type=float, default=None, help="default: 1e-4 unet, 1e-2 patch-cnn")
    p.add_argument("--wg", type=float, default=0.75, help="guidance loss weight w_g")
    p.add_argument("--wc", type=float, default=0.25, help="classification loss weight w_c")
    p.add_argument(
        "--layer", default=None, help="layer whose attention is steered (default: the model's)"
    )
    p.add_argument("--seed", type=int, default=0, help=SEED_HELP)
    p.add_argument("--report", default=None, help="write the JSON report here")
    p.add_argument("--revert", action="store_true", help="put the model before guidance back")
