"""Memory of `napari-hitl export --what image` on a large image: bounded, not the image's size.

Builds a store holding one EDGE × EDGE single-band uint8 image (default 20 000², 400 MB) from a
memory-mapped .npy, then exports it to GeoTIFF, zarr and .npy in fresh processes and prints
each export's peak resident memory against two baselines measured in the same run: the same
export of a 256² image of the same store (the interpreter, imports and fixed costs), and the
image's size in memory.

Usage (from the repository root)::

    .venv/bin/python benchmarks/export_memory.py            # 20 000², a few minutes
    .venv/bin/python benchmarks/export_memory.py --edge 8000

The store and the exports go to a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# VmHWM is this process's own peak (getrusage's ru_maxrss also counts the parent's at fork time)
PEAK = """
import sys
from napari_hitl.cli import main
code = main(sys.argv[1:]) if len(sys.argv) > 1 else 0
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(int(hwm.split()[1]) // 1024)  # MiB
sys.exit(code)
"""


def _peak_mib(args: list[str]) -> tuple[int, float]:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", PEAK, *args], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip().splitlines()[-1]), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edge", type=int, default=20000, help="image side in pixels")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        src = np.lib.format.open_memmap(
            folder / "big.npy", mode="w+", dtype=np.uint8, shape=(args.edge, args.edge)
        )
        for y in range(0, args.edge, 2048):  # a gradient, written in strips
            src[y : y + 2048] = (np.arange(y, min(y + 2048, args.edge))[:, None] % 251).astype(
                np.uint8
            )
        src.flush()
        del src
        np.save(folder / "small.npy", np.zeros((256, 256), np.uint8))
        store = folder / "p.zarr"
        for name in ("big", "small"):
            src_file = str(folder / f"{name}.npy")
            subprocess.run(
                [sys.executable, "-m", "napari_hitl.cli", "import", str(store), src_file],
                check=True,
                capture_output=True,
            )
        size = args.edge * args.edge / 2**20
        print(f"image {args.edge}² uint8: {size:.0f} MiB in memory")
        print("| export to | baseline 256² MiB | peak MiB | peak − baseline | ÷ image size | s |")
        print("|---|---:|---:|---:|---:|---:|")
        for suffix in (".tif", ".zarr", ".npy"):
            cmd = ["export", str(store), "--what", "image", "--out"]
            base, _ = _peak_mib([*cmd, str(folder / f"small{suffix}"), "--image", "small"])
            peak, secs = _peak_mib([*cmd, str(folder / f"out{suffix}"), "--image", "big"])
            extra = peak - base
            print(f"| {suffix} | {base} | {peak} | {extra} | {extra / size:.2f} | {secs:.0f} |")


if __name__ == "__main__":
    main()
