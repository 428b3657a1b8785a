"""The fixed multiscale filter bank against scipy/scikit-image references, tiling and projection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F
from skimage.feature import hessian_matrix_eigvals, structure_tensor_eigenvalues

from napari_hitl.core.learning.filter_bank import (
    DEFAULT_SIGMAS,
    FEATURE_KINDS,
    FilterBank,
    fit_projection,
)
from napari_hitl.core.tiling import tiled_apply

# scipy's second-derivative kernels truncated at 4σ leak ~1e-3 of the mean intensity (their
# weights do not sum to 0), which σ² normalisation turns into ~2 % of a σ = 8 Laplacian; the
# bank's kernels are moment-corrected, so the references use truncate=8 where that matters.
REF_TRUNCATE = 8.0
REL_TOL = 3e-3  # max |bank - reference| / max |reference|, per feature and scale (seen ≤ 1.5e-3)


def _image(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Random texture with structure at several scales, values around 0–2."""
    rng = np.random.default_rng(seed)
    return (
        ndi.gaussian_filter(rng.random(shape), 1.0) * 3
        + ndi.gaussian_filter(rng.random(shape), 6.0) * 20
    ).astype(np.float64)


def _references(img: np.ndarray, s: float) -> list[np.ndarray]:
    """The 7 features at scale ``s`` from scipy/scikit-image, scale-normalised like the bank."""
    t = REF_TRUNCATE
    lr = ndi.gaussian_filter(img, s, order=(1, 0), truncate=t)
    lc = ndi.gaussian_filter(img, s, order=(0, 1), truncate=t)
    tensor = [ndi.gaussian_filter(a * b, s / 2) for a, b in ((lr, lr), (lr, lc), (lc, lc))]
    # scipy's sampled second derivatives; skimage's hessian_matrix(use_gaussian_derivatives=True)
    # chains two first derivatives at σ/√2, whose sampling differs by ~3 % at σ = 1.
    hess = hessian_matrix_eigvals(
        [ndi.gaussian_filter(img, s, order=o, truncate=t) for o in ((2, 0), (1, 1), (0, 2))]
    )
    st = structure_tensor_eigenvalues(tensor)
    return [
        ndi.gaussian_filter(img, s),
        s * ndi.gaussian_gradient_magnitude(img, s, truncate=t),
        s * s * ndi.gaussian_laplace(img, s, truncate=t),
        s * s * hess[0],
        s * s * hess[1],
        s * s * st[0],
        s * s * st[1],
    ]


def test_every_kind_matches_scipy_and_skimage_in_the_interior() -> None:
    bank = FilterBank(1)
    h = bank.halo
    img = _image((2 * h + 64, 2 * h + 72))
    out = bank(torch.tensor(img[None, None], dtype=torch.float32))[0].numpy()
    assert out.shape == (28, 64, 72)
    names = list(FEATURE_KINDS)
    for si, s in enumerate(DEFAULT_SIGMAS):
        for j, ref in enumerate(_references(img, s)):
            ref = ref[h:-h, h:-h]
            err = np.abs(out[si * 7 + j] - ref).max() / np.abs(ref).max()
            assert err < REL_TOL, (s, j, names, err)


def test_small_sigma_uses_scipy_kernels_exactly() -> None:
    """Below √2 the kernels are scipy's own (Gaussian) — float32 rounding only."""
    bank = FilterBank(1, sigmas=(0.7, 1.2), features=("gaussian",))
    img = _image((60, 50), seed=1)
    out = bank(torch.tensor(img[None, None], dtype=torch.float32))[0].numpy()
    h = bank.halo
    for i, s in enumerate((0.7, 1.2)):
        np.testing.assert_allclose(out[i], ndi.gaussian_filter(img, s)[h:-h, h:-h], atol=2e-6)


def test_tiled_output_equals_the_whole_image_output() -> None:
    rng = np.random.default_rng(3)
    x = rng.random((2, 150, 173)).astype(np.float32)
    bank = FilterBank(2, sigmas=(1.0, 3.0))

    def fn(window: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return bank(torch.from_numpy(window)[None])[0].numpy()

    def run(tile: int | None) -> np.ndarray:
        gen = tiled_apply(fn, x, bank.out_channels, bank.halo, align=4, tile=tile)
        try:
            while True:
                next(gen)
        except StopIteration as stop:
            return stop.value

    whole, tiled = run(None), run(64)
    assert whole.shape == (bank.out_channels, 150, 173)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)


def test_reflect_padding_equals_valid_filtering_of_the_reflected_image() -> None:
    x = torch.rand(1, 2, 40, 45)
    valid, reflect = FilterBank(2, sigmas=(1.0, 2.0)), FilterBank(2, (1.0, 2.0), padding="reflect")
    h = valid.halo
    out = reflect(x)
    assert out.shape == (1, valid.out_channels, 40, 45)
    torch.testing.assert_close(out, valid(F.pad(x, (h, h, h, h), mode="reflect")))


def test_scale_normalised_edge_response_is_the_same_at_every_scale() -> None:
    """A unit step gives a gradient feature of 1/√(2π) at the edge whatever σ."""
    bank = FilterBank(1, features=("gradient",))
    img = np.zeros((2 * bank.halo + 8, 2 * bank.halo + 8), np.float32)
    img[:, img.shape[1] // 2 :] = 1.0
    out = bank(torch.from_numpy(img)[None, None])[0]
    edge = out[:, 4, 3:5].mean(-1).numpy()  # the two columns either side of the step
    # Unnormalised, the gradient would fall as 1/σ (0.4 → 0.05); sampling shifts σ = 1 by ~9 %.
    np.testing.assert_allclose(edge, 1 / math.sqrt(2 * math.pi), rtol=0.1)
    np.testing.assert_allclose(edge[1:], 1 / math.sqrt(2 * math.pi), rtol=0.03)


def test_shapes_halo_channels_and_no_parameters() -> None:
    bank = FilterBank(3)
    # σ = 8: pre-smoothing √63 (radius 32) + σ = 1 derivatives (4) + outer scale 4 (16).
    assert bank.halo == 52
    assert FilterBank(3, features=("gaussian", "hessian")).halo == 36
    assert FilterBank(1, sigmas=(1.0,)).halo == 4 + 2
    assert bank.per_scale == 7 and bank.out_channels == 3 * 4 * 7
    assert len(bank.feature_names()) == bank.out_channels
    assert bank.feature_names()[:2] == ["c0 gaussian σ=1", "c0 gradient σ=1"]
    assert FilterBank(1, features=("structure_tensor", "gaussian")).features == (
        "gaussian",
        "structure_tensor",
    )
    assert list(bank.parameters()) == []
    assert bank.state_dict() == {}  # kernels follow from the configuration
    out = bank(torch.rand(2, 3, 2 * 52 + 5, 2 * 52 + 7))
    assert out.shape == (2, 84, 5, 7) and out.dtype == torch.float32
    assert bank.crop(torch.zeros(2, 3, 109, 111)).shape == (2, 3, 5, 7)
    ch = FilterBank(1, sigmas=(1.0,), features=("gaussian",))
    assert ch(torch.rand(1, 1, 20, 20).double()).dtype == torch.float64


def test_batch_and_channels_are_filtered_independently() -> None:
    bank = FilterBank(2, sigmas=(1.0, 2.0))
    x = torch.rand(2, 2, 40, 41)
    out = bank(x)
    one = FilterBank(1, sigmas=(1.0, 2.0))
    f = one.out_channels
    torch.testing.assert_close(out[1, f:], one(x[1:, 1:])[0])
    torch.testing.assert_close(out[0, :f], one(x[:1, :1])[0])


def test_gradients_flow_to_the_input_and_stay_finite() -> None:
    x = torch.rand(1, 2, 40, 40)
    x[:, :, :20] = 0.5  # flat region: gradient magnitude and eigenvalue gaps are exactly 0
    x.requires_grad_(True)
    bank = FilterBank(2, sigmas=(1.0, 2.0), projection=np.array([[0.6, 0.8]]))
    bank(x).square().sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def _correlated_samples(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(4000, 3)) * np.array([3.0, 1.0, 0.3])
    mixing = np.linalg.qr(rng.normal(size=(15, 15)))[0][:, :3]
    return latent @ mixing.T + 0.01 * rng.normal(size=(4000, 15)) + 0.5


def test_projection_is_pca_deterministic_and_sign_fixed() -> None:
    samples = _correlated_samples()
    p = fit_projection(samples, 3)
    assert p.shape == (3, 15) and p.dtype == np.float32
    np.testing.assert_allclose(p @ p.T, np.eye(3), atol=1e-5)
    variances = np.var((samples - samples.mean(0)) @ p.T, axis=0)
    np.testing.assert_allclose(variances, [9.0, 1.0, 0.09], rtol=0.1)
    assert np.all(np.diff(variances) < 0)  # explained variance in decreasing order
    # Same axes as an eigen-decomposition of the covariance, up to sign.
    evecs = np.linalg.eigh(np.cov(samples.T))[1][:, ::-1][:, :3].T
    np.testing.assert_allclose(np.abs(p @ evecs.T), np.eye(3), atol=1e-4)
    # Deterministic: the sample order does not matter, the largest entry of a row is positive.
    shuffled = samples[np.random.default_rng(1).permutation(len(samples))]
    np.testing.assert_allclose(fit_projection(shuffled, 3), p, atol=1e-5)
    assert np.all(p[np.arange(3), np.abs(p).argmax(1)] > 0)
    white = fit_projection(samples, 2, whiten=True)
    np.testing.assert_allclose(np.var(samples @ white.T, axis=0, ddof=1), [1.0, 1.0], rtol=1e-4)


def test_projected_bank_filters_the_components() -> None:
    p = fit_projection(_correlated_samples(), 3)
    bank = FilterBank(15, projection=p)
    assert bank.filtered_channels == 3 and bank.out_channels == 84 <= 100
    assert list(bank.state_dict()) == ["projection"]
    assert bank.feature_names()[0] == "pc0 gaussian σ=1"
    small = FilterBank(15, sigmas=(1.0, 2.0), projection=p)
    x = torch.rand(1, 15, 40, 40)
    components = torch.einsum("kc,nchw->nkhw", torch.from_numpy(p), x)
    torch.testing.assert_close(small(x), FilterBank(3, sigmas=(1.0, 2.0))(components))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigmas": (1.0, 0.0)}, "every sigma must be a finite number > 0"),
        ({"sigmas": ()}, "sigmas is empty"),
        ({"sigmas": (float("nan"),)}, "finite number > 0"),
        ({"features": ("gaussian", "sobel")}, "unknown or no feature kinds"),
        ({"padding": "same"}, "padding must be"),
        ({"projection": np.ones((3, 4))}, r"projection must be a \(K, 2\) matrix"),
    ],
)
def test_bad_configuration_raises(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FilterBank(2, **kwargs)


def test_bad_input_raises() -> None:
    bank = FilterBank(2, sigmas=(1.0, 2.0))
    with pytest.raises(ValueError, match="expects N, C, H, W"):
        bank(torch.rand(2, 30, 30))
    with pytest.raises(ValueError, match="built for 2 channels, got 3"):
        bank(torch.rand(1, 3, 30, 30))
    with pytest.raises(ValueError, match="floating-point"):
        bank(torch.ones(1, 2, 30, 30, dtype=torch.int64))
    with pytest.raises(ValueError, match="larger than twice the halo"):
        bank(torch.rand(1, 2, 2 * bank.halo, 50))
    with pytest.raises(ValueError, match="larger than the halo"):
        FilterBank(2, sigmas=(1.0, 2.0), padding="reflect")(torch.rand(1, 2, 8, 50))
    with pytest.raises(ValueError, match="between 1 and the 4 bands"):
        fit_projection(np.ones((10, 4)), 5)
    with pytest.raises(ValueError, match=r"\(P, C\) array"):
        fit_projection(np.ones(10))
    with pytest.raises(ValueError, match="NaN"):
        fit_projection(np.array([[1.0, np.nan], [0.0, 1.0]]), 1)
