"""Which images to paint first, before a model exists: typical images of different kinds."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hitl.core.active.first_images import first_images, image_description
from napari_hitl.core.evaluation.simulate import Sample, SimulationConfig, simulate
from napari_hitl.core.progress import run_to_end


def _kind(
    kind: int, offset: float, rng: np.random.Generator, bands: int = 3, size: int = 48
) -> np.ndarray:
    """An image of one of three kinds: bright above (0), stripes 6 px apart (1), bright right
    (2)."""
    yy, xx = np.mgrid[0:size, 0:size]
    if kind == 0:
        base = np.where(yy < size // 2, 1.5, -1.5)
    elif kind == 1:
        base = np.sin(2 * np.pi * xx / 6.0)
    else:
        base = np.where(xx >= size // 2, 1.5, -1.5)
    img = np.stack([base * (1 + 0.2 * b) for b in range(bands)]) + offset
    return (img + rng.normal(0, 0.05, img.shape)).astype(np.float32)


def _collection(
    bands: int = 3, sizes: tuple[int, ...] = (48,)
) -> tuple[list[np.ndarray], list[int], list[float]]:
    rng = np.random.default_rng(0)
    xs, kinds, offsets = [], [], []
    for kind in (0, 1, 2):
        for i, offset in enumerate((-0.3, -0.15, 0.0, 0.15, 0.3, 0.9)):  # one is unusual
            xs.append(_kind(kind, offset, rng, bands, sizes[i % len(sizes)]))
            kinds.append(kind)
            offsets.append(offset)
    order = rng.permutation(len(xs))  # the kinds interleaved
    return [xs[i] for i in order], [kinds[i] for i in order], [offsets[i] for i in order]


@pytest.mark.parametrize("bands", [3, 6])
def test_one_typical_image_of_each_kind(bands):
    xs, kinds, offsets = _collection(bands)
    picked = first_images(xs, 3)
    assert len(set(picked)) == 3
    assert sorted(kinds[i] for i in picked) == [0, 1, 2]  # every kind, none twice
    if bands == 3:  # typical: not the image shifted far from the others of its kind (with six
        # copies of one pattern that shift is as large as a kind's and may make its own cluster)
        assert all(abs(offsets[i]) <= 0.3 for i in picked)


def test_random_picks_would_miss_a_kind_often():
    """The effect the benchmark measures: three random picks of 18 images miss a kind in most
    draws, the typical picks never do."""
    _, kinds, _ = _collection()
    rng = np.random.default_rng(1)
    missed = np.mean(
        [len({kinds[i] for i in rng.choice(18, 3, replace=False)}) < 3 for _ in range(500)]
    )
    assert missed > 0.6


def test_sizes_may_differ_and_nodata_is_ignored():
    xs, kinds, _ = _collection(sizes=(48, 80, 300))  # 300 px: subsampled first
    xs[0][:, :5, :5] = np.nan
    picked = first_images(xs, 3)
    assert sorted(kinds[i] for i in picked) == [0, 1, 2]
    assert all(np.isfinite(p).all() for p in image_description(xs[0]))


def test_asking_for_all_or_too_many_returns_every_image_and_bad_input_raises():
    xs, _, _ = _collection()
    assert first_images(xs[:4], 4) == [0, 1, 2, 3]
    assert first_images(xs[:4], 9) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="1 or more"):
        first_images(xs, 0)
    with pytest.raises(ValueError, match="same number of bands"):
        first_images([xs[0], xs[1][:2]], 1)


def test_simulate_strokes_the_typical_images_first():
    rng = np.random.default_rng(3)
    samples = []
    for i, kind in enumerate([0, 1, 2] * 4):
        truth = np.full((48, 48), kind + 1, np.uint8)
        truth[:, :4] = 1 + (kind + 1) % 3  # every image shows two classes
        samples.append(Sample(f"im{i:02d}", _kind(kind, 0.0, rng), truth))
    config = SimulationConfig(
        iterations=1, seed_images=3, seed_choice="typical", test_fraction=0.25, max_images=None
    )
    config.train.steps = 2
    report = run_to_end(simulate(samples, config))
    kinds = {int(name[2:]) % 3 for name in report["config"]["seed_image_names"]}
    assert kinds == {0, 1, 2}
    with pytest.raises(ValueError, match="seed choice"):
        run_to_end(simulate(samples, SimulationConfig(seed_choice="best")))
