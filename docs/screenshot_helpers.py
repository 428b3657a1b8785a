"""Shared pieces of the widget screenshot scripts (``docs/make_*_screenshots.py``): run them
from the repository root under Xvfb; PNGs land in ``docs/images/guide/``."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image
from qtpy.QtWidgets import QApplication

HERE = Path(__file__).resolve().parent
OUT = HERE / "images" / "guide"
WINDOW = (1500, 950)
MAX_WIDTH = 1400
T0 = time.perf_counter()


def log(msg: str) -> None:
    """Print ``msg`` with the seconds since start."""
    print(f"[{time.perf_counter() - T0:6.1f} s] {msg}", flush=True)


def settle(seconds: float = 0.4) -> None:
    """Let Qt draw for ``seconds``."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def wait_jobs(widget, timeout: float = 300) -> None:
    """Wait until the widget's job runner is idle (``TimeoutError`` after ``timeout`` s)."""
    end = time.perf_counter() + timeout
    while widget.jobs.busy:
        if time.perf_counter() > end:
            raise TimeoutError(widget.jobs.name)
        QApplication.processEvents()
        time.sleep(0.02)
    settle()


def shot(viewer, name: str, box: tuple[int, int, int, int] | None = None) -> Path:
    """Screenshot the whole window into ``OUT/name.png`` (≤ MAX_WIDTH, 256 colours).

    ``box`` (left, top, right, bottom in the window's logical pixels) keeps only that part.
    """
    settle()
    arr = viewer.window.screenshot(flash=False, canvas_only=False)
    img = Image.fromarray(np.asarray(arr)).convert("RGB")
    if box is not None:  # the screenshot is in device pixels
        ratio = img.width / viewer.window._qt_window.width()
        img = img.crop(tuple(round(v * ratio) for v in box))
    if img.width > MAX_WIDTH:
        img = img.resize((MAX_WIDTH, round(img.height * MAX_WIDTH / img.width)), Image.LANCZOS)
    img = img.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    path = OUT / f"{name}.png"
    img.save(path, optimize=True)
    log(f"wrote {path.relative_to(HERE.parent)} ({img.width}×{img.height})")
    return path
