"""Which images to paint first, before any model exists (a cold start).

Active learning ranks images by what a trained model says about them (:mod:`.strategies`); the
first strokes have no model to ask. With a budget of a few images, picking the most *typical*
image of each of as many *different* kinds of image as the budget allows beats both random picks
and the most unusual ones (TypiClust: Hacohen, Dekel & Weinshall, "Active learning on a budget",
ICML 2022). :func:`first_images` does that on a description of each image computed from its own
bands — no weights to download, no labels read:

- the layout (:data:`GRID` × :data:`GRID` block means of each component: sky above, road below),
- the spread of each component over the image,
- its texture (mean gradient magnitude at σ = 1 and 3 px, on a few full-resolution windows),

on the bands themselves or, for more than :data:`COMPONENTS` bands, on their first principal
components over all the images. Each part is standardized over the images and weighs the same;
k-means with one cluster per image to pick groups the images, and each cluster gives the image
nearest its centre, the largest cluster first. (A lone image far from all others can make a
cluster of its own and be picked; TypiClust's density weighting avoids that, but on photos it
also left whole kinds of scene — forests, coasts — unpicked, so it is not used.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

GRID = 4  # block means per side: the layout part of the description
COMPONENTS = 3  # more bands than this are described by their first principal components
MAX_SIDE = 256  # larger images: principal axes from strided pixels, texture from windows
TEXTURE_SIGMAS = (1.0, 3.0)
# texture is read on the whole image, or on five full-resolution windows of MAX_SIDE² for images
# larger than that (striding would alias fine textures away)


def _subsampled(x: np.ndarray) -> np.ndarray:
    step = max(1, int(np.ceil(max(x.shape[1:]) / MAX_SIDE)))
    return np.asarray(x[:, ::step, ::step], np.float32)


def _projection(xs: Sequence[np.ndarray]) -> np.ndarray | None:
    """Rows: the first :data:`COMPONENTS` principal axes of the images' pixels (``None`` for
    few bands)."""
    c = xs[0].shape[0]
    if c <= COMPONENTS:
        return None
    pix = np.concatenate([x.reshape(c, -1)[:, ::7] for x in xs], axis=1).T
    pix = pix[np.isfinite(pix).all(1)]
    if len(pix) < c:
        return None
    pix = pix - pix.mean(0)
    _, _, vt = np.linalg.svd(pix, full_matrices=False)
    return vt[:COMPONENTS]


def _windows(x: np.ndarray, size: int = MAX_SIDE) -> list[np.ndarray]:
    """Up to five full-resolution windows of ``x`` (its centre and its quarters' centres)."""
    h, w = x.shape[1:]
    if h <= size and w <= size:
        return [x]
    out = []
    for fy, fx in ((0.5, 0.5), (0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75)):
        r0 = min(max(0, int(fy * h) - size // 2), max(0, h - size))
        c0 = min(max(0, int(fx * w) - size // 2), max(0, w - size))
        out.append(x[:, r0 : r0 + size, c0 : c0 + size])
    return out


def _project(x: np.ndarray, projection: np.ndarray | None) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if projection is not None:
        x = np.einsum("kc,chw->khw", projection.astype(np.float32), x)
    fill = np.nanmean(x, axis=(1, 2), keepdims=True) if np.isfinite(x).any() else 0.0
    return np.where(np.isfinite(x), x, np.nan_to_num(fill))


def image_description(x: np.ndarray, projection: np.ndarray | None = None) -> list[np.ndarray]:
    """The three parts (layout, spread, texture) describing a normalized ``C, H, W`` image.

    Parameters
    ----------
    x
        The image's normalized bands (NaN where there is no data).
    projection
        ``K, C`` rows to project the bands on first (:func:`first_images` fits them).

    Returns
    -------
    list of numpy.ndarray
        Layout (``K·GRID²`` block means) and spread (``K`` standard deviations) of the image,
        and texture (``K·2`` mean gradient magnitudes over the image or, when it is larger than
        :data:`MAX_SIDE`², five windows of that size).
    """
    z = _project(x, projection)  # block means and spread read every pixel (no aliasing)
    h, w = z.shape[1:]
    rows = np.array_split(np.arange(h), min(GRID, h))
    cols = np.array_split(np.arange(w), min(GRID, w))
    layout = []
    for band in z:
        blocks = [float(band[np.ix_(r, c)].mean()) for r in rows for c in cols]
        layout.extend(blocks + [float(band.mean())] * (GRID * GRID - len(blocks)))
    spread = z.reshape(z.shape[0], -1).std(1)
    wins = _windows(x)  # the image itself when it is small: already projected as z
    windows = [z] if wins[0] is x else [_project(win, projection) for win in wins]
    texture = [
        np.mean([ndi.gaussian_gradient_magnitude(win[k], s).mean() for win in windows])
        for k in range(z.shape[0])
        for s in TEXTURE_SIGMAS
    ]
    return [np.asarray(layout), spread, np.asarray(texture)]


def described(xs: Sequence[np.ndarray]) -> np.ndarray:
    """Rows: each image's description, every part standardized over the images and weighted
    to count the same (the space :func:`first_images` clusters in).

    Parameters
    ----------
    xs
        Normalized ``C, H, W`` images with the same bands (more than :data:`COMPONENTS`:
        described on their first principal components over all of them).

    Returns
    -------
    numpy.ndarray
        ``len(xs), D`` features.
    """
    projection = _projection([_subsampled(x) for x in xs])
    parts = [image_description(x, projection) for x in xs]
    blocks = []
    for i in range(len(parts[0])):
        a = np.stack([p[i] for p in parts])
        a = (a - a.mean(0)) / (a.std(0) + 1e-6)
        blocks.append(a / np.sqrt(a.shape[1]))  # each part weighs the same
    return np.concatenate(blocks, axis=1)


def first_images(xs: Sequence[np.ndarray], n: int, seed: int = 0) -> list[int]:
    """Indices of ``n`` images of ``xs`` to label first: typical and unlike one another.

    Parameters
    ----------
    xs
        Normalized ``C, H, W`` images (the same bands each; sizes may differ).
    n
        How many to pick (all of them, in their order, when ``n >= len(xs)``).
    seed
        Seeds k-means' starts.

    Returns
    -------
    list of int
        ``n`` distinct indices, the most typical image of the largest group first.

    Raises
    ------
    ValueError
        ``n`` is below 1, or the images do not have the same number of bands.
    """
    if n < 1:
        raise ValueError(f"the number of images to pick must be 1 or more, got {n}")
    if len({x.shape[0] for x in xs}) > 1:
        raise ValueError("the images must have the same number of bands")
    if n >= len(xs):
        return list(range(len(xs)))
    features = described(xs)
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=n, n_init=10, random_state=seed).fit(features)
    sizes = np.bincount(km.labels_, minlength=n)
    picked: list[int] = []
    for cluster in np.argsort(-sizes, kind="stable"):
        members = np.flatnonzero(km.labels_ == cluster)
        if members.size == 0:
            continue
        d = np.linalg.norm(features[members] - km.cluster_centers_[cluster], axis=1)
        picked.append(int(members[np.argmin(d)]))
    rest = [i for i in range(len(xs)) if i not in picked]  # empty clusters: fill in order
    return picked + rest[: n - len(picked)]
