"""Throughput of the fixed filter bank (``napari_hitl.core.learning.filter_bank``) on one thread.

Usage: ``python benchmarks/filter_bank_speed.py [--threads 1] [--tile 512] [--repeats 5]``

Times ``FilterBank.forward`` on a ``tile``² output (input ``tile + 2*halo``) for 3 bands, and for
15 bands projected to 3 PCA components; prints output megapixels per second (best of repeats).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from napari_hitl.core.learning.filter_bank import FilterBank, fit_projection


def time_bank(bank: FilterBank, bands: int, tile: int, repeats: int) -> tuple[float, float]:
    """Median seconds per call and output Mpx/s of ``bank`` on a random ``tile``² output."""
    size = tile + 2 * bank.halo
    x = torch.rand(1, bands, size, size)
    times = []
    with torch.no_grad():
        bank(x)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            bank(x)
            times.append(time.perf_counter() - t0)
    sec = min(times)
    return sec, tile * tile / sec / 1e6


def main() -> None:
    """Print the throughput table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    cases = {
        "3 bands": (FilterBank(3), 3),
        "15 bands -> PCA 3": (
            FilterBank(15, projection=fit_projection(rng.random((1000, 15)))),
            15,
        ),
        "1 band": (FilterBank(1), 1),
    }
    print(f"threads={args.threads} tile={args.tile}² (output), best of {args.repeats}")
    for name, (bank, bands) in cases.items():
        sec, mpx = time_bank(bank, bands, args.tile, args.repeats)
        print(
            f"{name:>18}: halo {bank.halo}, {bank.out_channels} channels, "
            f"{sec * 1e3:7.1f} ms/tile, {mpx:5.2f} Mpx/s"
        )


if __name__ == "__main__":
    main()
