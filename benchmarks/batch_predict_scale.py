"""Batch prediction at scale: peak memory and throughput from 1k² to 20k² (issue 8).

Builds synthetic 15-band uint16 stores of N × N pixels (the sample scene, 1024², tiled with
flips so that neighbouring tiles differ), trains the default U-Net once on a small store with the
same bands, and predicts each big store with ``napari-hitl predict`` (dask ``map_overlap``,
block by block into the store) in a child process whose peak RSS is read from the kernel.
The baseline, measured in the same run, is the in-memory prediction
(``predict_project_image``: the whole image normalized in memory) at the sizes it can hold.

    python benchmarks/batch_predict_scale.py --sizes 1024 2048 5120 10240 20000 \
        --out benchmarks/results/batch_scale

Needs ~13 GB of free disk for 20000² (each store is deleted after its measurement).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def lazy_scene(n: int, tile_bands: np.ndarray):
    """An N × N dask array tiling the 1024² scene (flipped per tile), uint16 reflectance."""
    import dask.array as da

    c, t, _ = tile_bands.shape

    def block(block_id=None):
        i, j = block_id[1:]
        b = tile_bands
        if i % 2:
            b = b[:, ::-1]
        if j % 2:
            b = b[:, :, ::-1]
        return b

    chunks = (
        (c,),
        tuple(min(t, n - y) for y in range(0, n, t)),
        tuple(min(t, n - x) for x in range(0, n, t)),
    )
    full = da.map_blocks(
        lambda block_id=None: block(block_id),
        chunks=((c,), (t,) * -(-n // t), (t,) * -(-n // t)),
        dtype=tile_bands.dtype,
        meta=np.empty((0, 0, 0), tile_bands.dtype),
    )
    return full[:, :n, :n].rechunk(((c,), *chunks[1:]))


def quantize(bands: np.ndarray, names: list[str]) -> np.ndarray:
    """Reflectance ×10000 (DSM in cm) as uint16, as satellite products store them."""
    out = np.empty(bands.shape, np.uint16)
    for i, name in enumerate(names):
        scale = 100.0 if name == "DSM" else 10000.0
        out[i] = np.clip(np.round(bands[i] * scale), 0, 65535)
    return out


def make_store(path: Path, data, names, classes):
    from napari_hitl.core.io.rasters import Raster
    from napari_hitl.core.store import ProjectStore, add_image

    store = ProjectStore.create(path, classes=classes)
    raster = Raster(
        data=data,
        axes="CYX",
        band_names=list(names),
        sources=["synthetic"] * len(names),
        roles=["dsm" if n == "DSM" else "spectral" for n in names],
    )
    add_image(store, raster, "mosaic")
    return store


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM). Not ``getrusage``: its ``ru_maxrss``
    survives ``exec`` and would report the parent's memory at fork time."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def child(args: argparse.Namespace) -> None:
    """Run one prediction in this process and print a JSON line with time and peak RSS."""
    import torch

    from napari_hitl.core.loop import predict_project_image
    from napari_hitl.core.loop.batch import predict_store_image
    from napari_hitl.core.progress import run_to_end
    from napari_hitl.core.store import ProjectStore

    torch.set_num_threads(args.threads)
    store = ProjectStore.open(args.child, "a")
    t0 = time.perf_counter()
    if args.mode == "batch":
        run_to_end(
            predict_store_image(
                store,
                "mosaic",
                workers=args.workers,
                chunk=args.chunk,
                restart=True,
                halo_reads=args.halo_reads,
            )
        )
    else:
        run_to_end(predict_project_image(store, "mosaic"))
    seconds = time.perf_counter() - t0
    rss = peak_rss_mib()
    print(json.dumps({"seconds": seconds, "peak_rss_mib": rss}))


def measure(store_path: Path, mode: str, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        str(store_path),
        "--mode",
        mode,
        "--threads",
        str(args.threads),
        "--workers",
        str(args.workers),
        "--halo-reads",
        args.halo_reads,
        *(["--chunk", str(args.chunk)] if args.chunk else []),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 5120, 10240, 20000])
    p.add_argument("--baseline-max", type=int, default=5120, help="largest in-memory baseline")
    p.add_argument("--out", default=str(HERE / "results" / "batch_scale"))
    p.add_argument("--work", default=str(Path.home() / ".cache" / "napari-hitl" / "batch-scale"))
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--workers", type=int, default=1, help="dask threads")
    p.add_argument("--chunk", type=int, default=None, help="block edge (default: the CLI's)")
    p.add_argument("--halo-reads", default="zarr", choices=("zarr", "dask"))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--mode", default="batch", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return

    from napari_hitl.core.evaluation.scribbles import sparse_scribbles
    from napari_hitl.core.learning.net import TrainConfig
    from napari_hitl.core.loop import load_state, save_latest, train_project
    from napari_hitl.core.progress import run_to_end
    from napari_hitl.core.sample.scene import make_sample_scene
    from napari_hitl.core.store.classes import make_classes

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scene = make_sample_scene((1024, 1024), 0)
    names = list(scene.band_names)
    classes = make_classes(scene.class_names, scene.class_colors)
    tile = quantize(scene.bands, names)

    t0 = time.perf_counter()
    small = make_store(work / "train.zarr", tile, names, classes)
    small.write_labels("mosaic", sparse_scribbles(scene.ground_truth, 0.01, seed=0))
    _report, state = run_to_end(train_project(small, TrainConfig(steps=150, seed=0)))
    print(f"trained the model in {time.perf_counter() - t0:.0f} s", flush=True)

    rows = []
    for n in args.sizes:
        path = work / f"mosaic_{n}.zarr"
        t0 = time.perf_counter()
        store = make_store(path, lazy_scene(n, tile), names, classes)
        save_latest(store, state.classifier, state.iteration, {})
        assert load_state(store).model_hash == state.model_hash
        built = time.perf_counter() - t0
        batch = measure(path, "batch", args)
        row = {
            "size": n,
            "megapixels": n * n / 1e6,
            "import_seconds": built,
            "batch_seconds": batch["seconds"],
            "batch_peak_rss_mib": batch["peak_rss_mib"],
            "batch_mpx_per_s": n * n / 1e6 / batch["seconds"],
        }
        if n <= args.baseline_max:
            mem = measure(path, "memory", args)
            row.update(
                {
                    "memory_seconds": mem["seconds"],
                    "memory_peak_rss_mib": mem["peak_rss_mib"],
                    "memory_mpx_per_s": n * n / 1e6 / mem["seconds"],
                }
            )
        rows.append(row)
        print(json.dumps(row), flush=True)
        shutil.rmtree(path)
        (out / "results.json").write_text(
            json.dumps(
                {
                    "threads": args.threads,
                    "workers": args.workers,
                    "chunk": args.chunk,
                    "halo_reads": args.halo_reads,
                    "rows": rows,
                },
                indent=2,
            )
        )
    shutil.rmtree(work, ignore_errors=True)
    report(out, rows)


def report(out: Path, rows: list[dict]) -> None:
    """Markdown table and plot of the results."""
    base = rows[0]["batch_mpx_per_s"]
    lines = [
        "| image | Mpx | batch: Mpx/s | vs 1k² | batch: peak RSS "
        "| in memory: Mpx/s | in memory: peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mem = (
            f"{r['memory_mpx_per_s']:.2f} | {r['memory_peak_rss_mib'] / 1024:.2f} GiB"
            if "memory_seconds" in r
            else "— | —"
        )
        lines.append(
            f"| {r['size']}² | {r['megapixels']:.0f} | {r['batch_mpx_per_s']:.2f} | "
            f"{r['batch_mpx_per_s'] / base:.2f} | "
            f"{r['batch_peak_rss_mib'] / 1024:.2f} GiB | {mem} |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    mpx = [r["megapixels"] for r in rows]
    a.plot(mpx, [r["batch_mpx_per_s"] for r in rows], "o-", label="batch (dask, into the store)")
    mem_rows = [r for r in rows if "memory_seconds" in r]
    a.plot(
        [r["megapixels"] for r in mem_rows],
        [r["memory_mpx_per_s"] for r in mem_rows],
        "s--",
        label="in memory",
    )
    a.set_xscale("log")
    a.set_xlabel("image size (megapixels)")
    a.set_ylabel("Mpx/s")
    a.set_ylim(0, None)
    a.set_title("throughput")
    a.legend()
    b.plot(mpx, [r["batch_peak_rss_mib"] / 1024 for r in rows], "o-", label="batch")
    b.plot(
        [r["megapixels"] for r in mem_rows],
        [r["memory_peak_rss_mib"] / 1024 for r in mem_rows],
        "s--",
        label="in memory",
    )
    b.axhline(2e9 / 2**30, color="grey", lw=0.8, ls=":", label="2 GB target")
    b.set_xscale("log")
    b.set_xlabel("image size (megapixels)")
    b.set_ylabel("peak RSS (GiB)")
    b.set_ylim(0, None)
    b.set_title("peak memory")
    b.legend()
    fig.tight_layout()
    fig.savefig(out / "batch_scale.png", dpi=110)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--report"]:  # redraw the table and plot from a results.json
        folder = Path(sys.argv[2])
        report(folder, json.loads((folder / "results.json").read_text())["rows"])
    else:
        main()
