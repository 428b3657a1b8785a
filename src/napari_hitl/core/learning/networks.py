"""Pixel classifiers trained from the user's own labels: the paper's patch CNN and a small U-Net.

Both are fully convolutional at inference: they map ``N, C, H, W`` (a reflect-padded tile) to
``N, K, H - 2*halo, W - 2*halo`` class logits, so any image size runs tile by tile without seams.
The random-forest baseline lives in :mod:`napari_hitl.core.learning.forest`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_hitl.core.choices import MODEL_NAMES
from napari_hitl.core.jsonable import Jsonable
from napari_hitl.core.learning.filter_bank import FilterBank


@dataclass
class ModelSpec(Jsonable):
    """What is needed to rebuild a model: its kind and sizes, and the scales of the U-Net's
    filter-bank front end (``None``: none; ``TrainConfig.filter_bank``)."""

    kind: str
    in_channels: int
    n_classes: int
    bank: list[float] | None = None


BANK_COMPONENTS = 3
"""The filter bank runs on the first principal components of the bands when there are more."""

UNET_HALO = 24
"""Context the U-Net proper needs around a pixel (its receptive field reaches 18 px)."""


def bank_margin(sigmas: list[float] | None, align: int = 4) -> int:
    """Pixels a U-Net with a filter bank at ``sigmas`` takes off each side of its input before
    the U-Net proper: the bank's halo rounded up to the pooling step (0 without a bank)."""
    return _rounded_up(FilterBank(1, sigmas).halo, align) if sigmas else 0


def _rounded_up(n: int, step: int) -> int:
    return -(-n // step) * step


class PatchCNN(nn.Module):
    """The patch CNN of the source paper, with its fully convolutional twin.

    Patch form (25×25 input → one pixel): conv 11×11 (20 filters, sigmoid) → max-pool 5 (stride 5,
    15×15 → 3×3) → FC 100 (sigmoid) → FC 100 (sigmoid) → K logits.

    Dense form (the same weights): conv 11×11 → max-pool 5 with stride 1 → the first FC as a 3×3
    convolution with dilation 5 → the second FC and the output as 1×1 convolutions. Every output
    pixel then sees exactly the 25×25 patch centred on it, and equals the patch form there.
    """

    halo = 12
    align = 1

    def __init__(self, in_channels: int, n_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 20, 11)
        self.fc1 = nn.Conv2d(20, 100, 3)  # used with dilation 5 in dense mode
        self.fc2 = nn.Conv2d(100, 100, 1)
        self.out = nn.Conv2d(100, n_classes, 1)
        # Parameter-free activation modules (not F.sigmoid) so that forward hooks can read the
        # activations by name (Grad-CAM layers ``conv_act``, ``fc1_act``, ``fc2_act``).
        self.conv_act = nn.Sigmoid()
        self.fc1_act = nn.Sigmoid()
        self.fc2_act = nn.Sigmoid()
        # Glorot initialisation, the one made for sigmoid units: with PyTorch's default the
        # sigmoids start saturated-flat and training stalls on a plateau.
        for m in (self.conv, self.fc1, self.fc2, self.out):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dense logits for every pixel of ``x`` at least ``halo`` pixels from its border."""
        x = x - 0.5  # inputs are normalized to ~[0, 1]; centred inputs suit sigmoid units
        h = self.conv_act(self.conv(x))
        h = F.max_pool2d(h, 5, stride=1)
        h = self.fc1_act(F.conv2d(h, self.fc1.weight, self.fc1.bias, dilation=5))
        h = self.fc2_act(self.fc2(h))
        return self.out(h)

    def forward_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """Logits of the centre pixels of ``N, C, 25, 25`` patches (the paper's form)."""
        h = self.conv_act(self.conv(patches - 0.5))  # N, 20, 15, 15
        h = F.max_pool2d(h, 5, stride=5)  # N, 20, 3, 3
        h = self.fc1_act(self.fc1(h))  # N, 100, 1, 1 (= a fully connected layer on 180 inputs)
        h = self.fc2_act(self.fc2(h))
        return self.out(h)[:, :, 0, 0]


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallUNet(nn.Module):
    """A small U-Net for multiband pixel classification (the default model).

    Three scales (full, 1/2, 1/4) with ``widths`` channels (24/48/64), light 1×1 fusion on the
    way up so that most work happens at low resolution. Its receptive field reaches 18 px from a
    pixel, so a ``halo`` of 24 px makes tiled and whole-image predictions agree to float precision
    (tested); tiles start on multiples of ``align`` so that the pooling grid never shifts.
    Other ``widths`` are for experiments (``benchmarks/learning_ablation.py``): the models the
    library builds, saves and loads always have the default ones.

    With ``bank_sigmas`` a fixed filter bank
    (:class:`~napari_hitl.core.learning.filter_bank.FilterBank`, ``"valid"`` borders, on the
    first :data:`BANK_COMPONENTS` principal components of the bands when there are more; the
    projection is a buffer that ``fit`` sets) computes ilastik-style features that enter the
    U-Net beside the bands. The input then loses ``input_margin`` pixels on each side first
    (the bank's halo rounded up to ``align``, so the pooling grid keeps its place) and
    ``halo`` grows by as much.
    """

    halo = UNET_HALO
    align = 4
    input_margin = 0

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        bank_sigmas: list[float] | None = None,
        widths: tuple[int, int, int] = (24, 48, 64),
    ) -> None:
        super().__init__()
        c0, c1, c2 = widths
        self.bank: FilterBank | None = None
        if bank_sigmas:
            projection = (
                np.zeros((BANK_COMPONENTS, in_channels), np.float32)
                if in_channels > BANK_COMPONENTS
                else None
            )
            self.bank = FilterBank(in_channels, bank_sigmas, projection=projection)
            self.input_margin = _rounded_up(self.bank.halo, self.align)  # = bank_margin
            self.halo = UNET_HALO + self.input_margin
            in_channels += self.bank.out_channels
        self.enc0 = _block(in_channels, c0)
        self.enc1 = _block(c0, c1)
        self.enc2 = _block(c1, c2)
        self.fuse1 = nn.Sequential(nn.Conv2d(c2 + c1, c1, 1), nn.BatchNorm2d(c1), nn.ReLU(True))
        self.fuse0 = nn.Sequential(
            nn.Conv2d(c1 + c0, c0, 1),
            nn.BatchNorm2d(c0),
            nn.ReLU(True),
            nn.Conv2d(c0, c0, 3, padding=1),
            nn.BatchNorm2d(c0),
            nn.ReLU(True),
        )
        self.out = nn.Conv2d(c0, n_classes, 1)

    def unet_input(self, x: torch.Tensor) -> torch.Tensor:
        """What enters the U-Net proper: ``x``, or with a filter bank the bands and their
        features, ``input_margin`` pixels smaller on each side."""
        if self.bank is None:
            return x
        m, extra = self.input_margin, self.input_margin - self.bank.halo
        # The bank filters one image plane at a time: on a channels-last input (inference)
        # every plane would be a strided view, and every shifted sum slow; one copy first.
        feats = self.bank(x.contiguous())
        if extra:
            feats = feats[..., extra:-extra, extra:-extra]
        # Bands and features written straight into the layout of ``x`` (a cat, then the
        # first convolution's own conversion to channels-last, copied all 99 channels twice).
        fmt = torch.contiguous_format if x.is_contiguous() else torch.channels_last
        n, c = x.shape[:2]
        shape = (n, c + feats.shape[1], *feats.shape[-2:])
        u = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt)
        u[:, :c] = x[..., m:-m, m:-m]
        u[:, c:] = feats
        return u

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map before the classifier (24 channels, the size of ``x`` less
        ``input_margin`` on each side)."""
        return self.unet_features(self.unet_input(x))

    def unet_features(self, u: torch.Tensor) -> torch.Tensor:
        """:meth:`features` from what enters the U-Net proper (:meth:`unet_input`: training
        computes the filter bank once per image and passes bands and features here)."""
        e0 = self.enc0(u)
        e1 = self.enc1(F.max_pool2d(e0, 2))
        e2 = self.enc2(F.max_pool2d(e1, 2))
        d1 = self.fuse1(torch.cat([F.interpolate(e2, size=e1.shape[-2:], mode="nearest"), e1], 1))
        return self.fuse0(torch.cat([F.interpolate(d1, size=e0.shape[-2:], mode="nearest"), e0], 1))

    def cropped_features(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`features` of the pixels at least ``halo`` from the border of ``x`` (what the
        logits of :meth:`forward` are computed from)."""
        f, h = self.features(x), UNET_HALO
        return f[..., h : f.shape[-2] - h, h : f.shape[-1] - h]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for the pixels at least ``halo`` from the border of ``x``."""
        logits = self.out(self.features(x))
        h = UNET_HALO
        return logits[..., h : logits.shape[-2] - h, h : logits.shape[-1] - h]


def build_model(spec: ModelSpec) -> nn.Module:
    """A fresh network for ``spec`` (``unet`` or ``patch-cnn``)."""
    if spec.kind == "unet":
        return SmallUNet(spec.in_channels, spec.n_classes, spec.bank)
    if spec.kind == "patch-cnn":
        return PatchCNN(spec.in_channels, spec.n_classes)
    raise ValueError(f"unknown network {spec.kind!r}; choose one of {', '.join(MODEL_NAMES)}")


def flops_per_pixel(model: nn.Module, in_channels: int, size: int = 128) -> float:
    """Multiply-adds × 2 per output pixel, counted with forward hooks on a ``size``² tile."""
    total = 0.0

    def conv_hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(mod, nn.Conv2d)
        k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
        total += 2.0 * k * out.numel()

    hooks = [
        m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)
    ]
    try:
        halo = int(getattr(model, "halo", 0))
        x = torch.zeros(1, in_channels, size + 2 * halo, size + 2 * halo)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            out = model(x)
        model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    if isinstance(model, PatchCNN):  # the dilated fc1 is applied through F.conv2d, count it here
        n = out.shape[-1] * out.shape[-2]
        total += 2.0 * 20 * 9 * 100 * n
    return total / (out.shape[-1] * out.shape[-2])
