"""Training on big images reads windows around the labels, never the whole image."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_hitl.core import loop
from napari_hitl.core.evaluation.scribbles import sparse_scribbles
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.learning.networks import bank_margin
from napari_hitl.core.loop import label_windows as lw
from napari_hitl.core.loop import load_state, predict_project_image, train_project
from napari_hitl.core.loop import train as loop_train
from napari_hitl.core.loop.label_windows import label_windows, labeled_tiles
from napari_hitl.core.progress import run_to_end
from napari_hitl.core.sample.store import build_sample_store


class _Spy:
    """A labels array that records the size of every read."""

    def __init__(self, data):
        self.data, self.shape, self.reads = data, data.shape, []

    def __getitem__(self, key):
        part = self.data[key]
        self.reads.append(part.size)
        return part


def test_windows_cover_every_label_with_context_and_never_overlap(tmp_path):
    labels = np.zeros((1000, 900), np.uint16)
    labels[10:14, 10:30] = 1  # near the corner: the window stops at the image edge
    labels[500:505, 300:700] = 2  # one long stroke over several tiles: one window
    labels[990, 899] = 3
    labels[600, 40] = 1
    arr = zarr.create_array(
        tmp_path / "l.zarr", shape=labels.shape, dtype="uint16", chunks=(128, 128)
    )
    arr[...] = labels
    spy = _Spy(arr)
    boxes = label_windows(spy, margin=64, tile=128)
    assert max(spy.reads) <= 128 * 128  # scanned tile by tile
    covered = np.zeros(labels.shape, int)
    for r0, r1, c0, c1 in boxes:
        covered[r0:r1, c0:c1] += 1
    assert covered.max() == 1  # no pixel in two windows
    rows, cols = np.nonzero(labels)
    for r, c in zip(rows, cols, strict=True):
        box = next(b for b in boxes if b[0] <= r < b[1] and b[2] <= c < b[3])
        assert r - box[0] >= min(64, r) and box[1] - r > min(64, 999 - r)
        assert c - box[2] >= min(64, c) and box[3] - c > min(64, 899 - c)
    assert covered.sum() < 0.6 * labels.size
    assert label_windows(np.zeros((300, 300), np.uint16), tile=128) == []
    assert labeled_tiles(labels, tile=500).tolist() == [[True, False], [True, True]]


def test_big_planes_train_from_windows_only(tmp_path, monkeypatch):
    """With the threshold lowered, a 256² image trains from two windows around its two labeled
    strips: no whole-image read, every label used, and the model learns as from the whole."""
    store = build_sample_store(tmp_path / "p.zarr", shape=(256, 256))
    gt = store.read_derived("sample", "ground_truth")
    scribbles = sparse_scribbles(gt, 0.05, seed=0)
    labels = np.zeros_like(scribbles)
    labels[:48] = scribbles[:48]  # two strips: top and bottom
    labels[-48:] = scribbles[-48:]
    store.write_labels("sample", labels)
    config = TrainConfig(steps=60, seed=0)

    run_to_end(train_project(store, config, fresh=True))
    whole = run_to_end(predict_project_image(store, "sample", write=False)).labels

    monkeypatch.setattr(lw, "WINDOWED_MIN_PIXELS", 64 * 64)
    monkeypatch.setattr(lw, "SCAN_TILE", 32)
    monkeypatch.setattr(lw, "WINDOW_MARGIN", 32)
    windows = []
    real = loop.normalized_window

    def spy(store_, name, norm, *, index=None, window=None):
        windows.append(window)
        return real(store_, name, norm, index=index, window=window)

    monkeypatch.setattr(loop_train, "normalized_window", spy)
    norm = load_state(store).classifier.normalization
    data = loop.training_images(store, ["sample"], norm, 0.5)
    assert len(data) == 2 and {im.name for im in data} == {"sample"}
    assert None not in windows  # never the whole image
    assert sum(im.x.shape[1] * im.x.shape[2] for im in data) == 2 * 96 * 256  # not 256²
    assert sum(int((im.target >= 0).sum()) for im in data) == int((labels > 0).sum())
    # a U-Net with a filter bank needs the bank's margin more context around the labels
    banked = loop.training_images(store, ["sample"], norm, 0.5, [1.0, 2.0])
    more = 32 + bank_margin([1.0, 2.0])
    assert [im.x.shape[1] for im in banked] == [64 + more] * 2 and more > 32  # tiles of 32

    run_to_end(train_project(store, config, fresh=True))
    monkeypatch.setattr(loop_train, "normalized_window", real)
    windowed = run_to_end(predict_project_image(store, "sample", write=False)).labels
    sel = gt > 0
    acc_whole = float((whole[sel] == gt[sel]).mean())
    acc_windowed = float((windowed[sel] == gt[sel]).mean())
    assert acc_windowed > 0.7  # measured 0.78 (whole image: 0.80)
    assert acc_windowed == pytest.approx(acc_whole, abs=0.06)
