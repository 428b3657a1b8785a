"""Spread strokes over the homogeneous region they lie in (ScribbleSup's idea, Lin et al. 2016).

A stroke says "this region is class c" more than "these 40 pixels are": each training image is cut
into superpixels (SLIC-zero on its normalized bands, ~``size``² px each), and the unlabeled pixels
of a superpixel whose human pixels are all of one class get that class as a weak label (weight
``weight`` < 1, trained in the machine-label group of the balanced loss, so they never outvote
the person). Superpixels follow band edges, so a label does not cross a strong edge.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_hitl.core.learning.data import LabeledImage


def superpixels(x: np.ndarray, size: int = 10) -> np.ndarray:
    """SLIC-zero superpixels of ``C, H, W`` normalized bands (``H, W`` int labels from 0).

    Parameters
    ----------
    x
        Normalized bands; NaN (invalid pixels) count as 0.
    size
        Typical superpixel edge in pixels.
    """
    from skimage.segmentation import slic

    if x.ndim != 3:
        raise ValueError(f"bands must be C, H, W; got shape {x.shape}")
    h, w = x.shape[1:]
    n = max(1, round(h * w / float(size * size)))
    img = np.nan_to_num(np.moveaxis(x, 0, -1).astype(np.float64, copy=False))
    return slic(img, n_segments=n, slic_zero=True, channel_axis=-1, start_label=0,
                enforce_connectivity=True)  # fmt: skip


def propagate(target: np.ndarray, human: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Class of each unlabeled pixel whose superpixel's human pixels all agree (else -1).

    Parameters
    ----------
    target
        ``H, W`` class indices, -1 = unlabeled.
    human
        ``H, W`` bool, the person's pixels among ``target``.
    segments
        ``H, W`` superpixel ids (0..S-1).

    Returns
    -------
    numpy.ndarray
        ``H, W`` int64: the propagated class on unlabeled pixels of pure superpixels, -1 elsewhere
        (labeled pixels keep -1: they already have a label).
    """
    seg = segments.ravel()
    t = target.ravel()
    hm = human.ravel() & (t >= 0)
    n_seg = int(seg.max()) + 1 if seg.size else 0
    k = int(t.max()) + 1 if t.size and t.max() >= 0 else 0
    out = np.full(t.shape, -1, np.int64)
    if k == 0 or not hm.any():
        return out.reshape(target.shape)
    counts = np.zeros((n_seg, k), np.int64)
    np.add.at(counts, (seg[hm], t[hm]), 1)
    n_classes = (counts > 0).sum(1)
    cls = np.where(n_classes == 1, counts.argmax(1), -1)
    out = np.where(t < 0, cls[seg], -1)
    return out.reshape(target.shape)


def propagate_images(
    images: Sequence[LabeledImage],
    human: Sequence[np.ndarray],
    weight: float = 0.3,
    size: int = 10,
) -> list[LabeledImage]:
    """The training images with strokes spread to their superpixels at ``weight``.

    ``human`` gives, per image, the person's pixels (held-out strokes must already be removed
    from ``target``, so calibration stays honest).
    """
    if not 0 < weight < 1:
        raise ValueError(f"the propagation weight must be in (0, 1), got {weight}")
    out = []
    for im, hm in zip(images, human, strict=True):
        if not (hm & (im.target >= 0)).any():
            out.append(im)
            continue
        prop = propagate(im.target, hm & (im.target >= 0), superpixels(im.x, size))
        new = prop >= 0
        if not new.any():
            out.append(im)
            continue
        target = np.where(new, prop, im.target).astype(im.target.dtype)
        w = np.where(new, np.float32(weight), im.weight).astype(im.weight.dtype)
        out.append(LabeledImage(im.name, im.x, target, w, im.extra))
    return out
