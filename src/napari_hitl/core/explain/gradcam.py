"""Why does the network call these pixels class c? Grad-CAM and per-band attribution.

Both explain a *score* of the pixel classifier over a *region* (a boolean mask: the whole image,
a box, the current view, or one predicted segment):

Grad-CAM (Selvaraju et al., ICCV 2017; the attention-guiding paper, §3.3, adapted to pixel
classifiers as in Seg-Grad-CAM)
    score = Σ over the region of the class-c logit. The gradients of the score with respect to
    the feature maps ``A_k`` of a layer are averaged over space into weights ``α_k``; the map is
    ``ReLU(Σ_k α_k A_k)``, resampled onto the image's pixels and divided by its maximum. The
    map is computed where the region's logits can depend on the input at all: the region's
    bounding box grown by the network's halo (its receptive field); it is 0 elsewhere.

Per-band attribution
    score = Σ over the region of the model's log-probability of class c (prior and temperature
    included, as the prediction reports it). Three methods:

    - ``integrated`` (default): integrated gradients (Sundararajan et al., 2017) from a baseline
      image in which every band is constant at its mean, ``steps`` midpoint steps. The band
      totals add up to score(x) − score(baseline) (completeness, up to the step error).
    - ``gradient``: gradient × (x − baseline), one backward pass (first-order estimate).
    - ``occlusion``: replace one band at a time by its mean; the drop of log p(c) per region
      pixel. Its map shows that drop on the region's pixels.

    A band's *value* is its total divided by the region's pixel count (mean change of log p(c)
    per pixel); its *share* is the value over the sum of the absolute values.

Large images are processed in tiles with the same halo and alignment as inference, so the
result does not depend on the tile size and memory stays bounded. The network is put in eval
mode for the computation and given back in the mode it was in; forward hooks are removed
whatever happens; the caller's arrays are never written.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_hitl.core.choices import REGION_HELP
from napari_hitl.core.errors import HitlError
from napari_hitl.core.progress import CancelToken, Progress
from napari_hitl.core.tiling import Box, ceil_to, pad_for_tiles, tile_grid

DEFAULT_LAYERS = {"SmallUNet": "enc1", "PatchCNN": "conv_act"}  # see default_layer
LAYER_CHOICES = {
    "SmallUNet": ("enc0", "enc1", "enc2", "fuse1", "fuse0"),
    "PatchCNN": ("conv_act", "fc1_act", "fc2_act"),
}


class ExplainError(HitlError, ValueError):
    """An explanation cannot be computed as asked (bad region, layer, class or model)."""


# ------------------------------------------------------------------------------ regions
@dataclass(frozen=True)
class Region:
    """The pixels an explanation is about.

    Attributes
    ----------
    kind
        ``"image"``, ``"box"`` or ``"segment"``.
    box
        ``(row0, row1, col0, col1)`` for a box.
    point
        ``(row, col)`` inside the segment for a segment.
    """

    kind: str = "image"
    box: Box | None = None
    point: tuple[int, int] | None = None

    @classmethod
    def parse(cls, text: str) -> Region:
        """Parse the CLI form: ``image``, ``box:r0,r1,c0,c1`` or ``segment:row,col``.

        Raises
        ------
        ExplainError
            Any other text (the message shows the accepted forms).
        """
        t = text.strip().lower()
        if t in ("image", "all", "whole"):
            return cls()
        m = re.fullmatch(r"(box|segment)\s*[:=]\s*([-\d\s,]+)", t)
        nums = [int(v) for v in m.group(2).split(",") if v.strip()] if m else []
        if m and m.group(1) == "box" and len(nums) == 4:
            r0, r1, c0, c1 = nums
            if r1 <= r0 or c1 <= c0:
                raise ExplainError(
                    f"box {nums} is empty: write ROW0,ROW1,COL0,COL1 with ROW1 > ROW0"
                )
            return cls("box", box=(r0, r1, c0, c1))
        if m and m.group(1) == "segment" and len(nums) == 2:
            return cls("segment", point=(nums[0], nums[1]))
        raise ExplainError(f"cannot read region {text!r}; use {REGION_HELP}")

    def describe(self) -> str:
        """Short text for reports and layer metadata."""
        if self.kind == "box":
            return "box " + ",".join(str(v) for v in self.box or ())
        if self.kind == "segment":
            return f"segment at {self.point}"
        return "whole image"

    def mask(
        self,
        shape: tuple[int, int],
        labels: np.ndarray | None = None,
        class_value: int | None = None,
    ) -> np.ndarray:
        """The region as an ``H, W`` bool mask.

        Parameters
        ----------
        shape
            The image's ``(H, W)``.
        labels, class_value
            For a segment: the predicted class map and the class; the segment is the
            8-connected component of ``labels == class_value`` holding :attr:`point`.

        Raises
        ------
        ExplainError
            A box or point outside the image, or a point not predicted as the class.
        """
        h, w = shape
        out = np.zeros((h, w), bool)
        if self.kind == "image":
            out[:] = True
            return out
        if self.kind == "box":
            r0, r1, c0, c1 = self.box or (0, 0, 0, 0)
            r0, r1, c0, c1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
            if r1 <= r0 or c1 <= c0:
                raise ExplainError(f"box {self.box} lies outside the image ({h}×{w})")
            out[r0:r1, c0:c1] = True
            return out
        row, col = self.point or (-1, -1)
        if not (0 <= row < h and 0 <= col < w):
            raise ExplainError(f"pixel ({row}, {col}) lies outside the image ({h}×{w})")
        if labels is None or class_value is None:
            raise ExplainError("a segment region needs the prediction: predict the image first")
        if int(labels[row, col]) != int(class_value):
            raise ExplainError(
                f"pixel ({row}, {col}) is predicted as class {int(labels[row, col])}, not "
                f"{class_value}: click inside a segment of that class"
            )
        from scipy import ndimage

        comp, _ = ndimage.label(labels == class_value, structure=np.ones((3, 3), bool))
        return comp == comp[row, col]


def bounding_box(mask: np.ndarray) -> Box:
    """``(row0, row1, col0, col1)`` of the True pixels of ``mask``.

    Raises
    ------
    ExplainError
        The mask is empty.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ExplainError("the region is empty: choose at least one pixel")
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def grow_box(box: Box, by: int, shape: tuple[int, int]) -> Box:
    """``box`` grown by ``by`` pixels on every side, clipped to an image of ``shape``."""
    r0, r1, c0, c1 = box
    return max(r0 - by, 0), min(r1 + by, shape[0]), max(c0 - by, 0), min(c1 + by, shape[1])


# ------------------------------------------------------------------------ model plumbing
def layer_names(net: nn.Module) -> tuple[str, ...]:
    """The layers Grad-CAM can use for ``net`` (module names), best-known models first."""
    known = LAYER_CHOICES.get(type(net).__name__)
    if known:
        return known
    return tuple(n for n, m in net.named_modules() if n and isinstance(m, nn.Conv2d))


def default_layer(net: nn.Module) -> str:
    """The default Grad-CAM layer: the U-Net's middle encoding, the patch CNN's convolution.

    ``enc1`` (½ resolution) rather than the smallest encoding ``enc2``: the U-Net trains on
    small crops (16² plus an 8 px margin when this was measured, 8² since), where ``enc2``
    sees cells of mostly padding and its map came out empty for one of two classes in 2 of 3
    seeds; ``enc1`` peaked on the objects in all of them.
    """
    name = DEFAULT_LAYERS.get(type(net).__name__)
    if name is not None:
        return name
    names = layer_names(net)
    if not names:
        raise ExplainError(f"{type(net).__name__} has no convolution layer for Grad-CAM")
    return names[-1]


def _module(net: nn.Module, layer: str) -> nn.Module:
    modules = dict(net.named_modules())
    if layer not in modules or not layer:
        raise ExplainError(
            f"the model has no layer {layer!r}; choose one of {', '.join(layer_names(net))}"
        )
    return modules[layer]


@contextlib.contextmanager
def eval_mode(net: nn.Module) -> Iterator[nn.Module]:
    """Put every module of ``net`` in eval mode; give each its own mode back afterwards."""
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        yield net
    finally:
        for m, training in modes:
            m.training = training


class _Tap:
    """Holds the output of a hooked layer during one forward pass."""

    value: torch.Tensor | None = None


@contextlib.contextmanager
def tapped(net: nn.Module, layer: str) -> Iterator[_Tap]:
    """Capture the output of ``layer`` on every forward pass; the hook is always removed."""
    tap = _Tap()

    def hook(_mod: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        tap.value = out

    handle = _module(net, layer).register_forward_hook(hook)
    try:
        yield tap
    finally:
        handle.remove()


def align_of(net: nn.Module) -> int:
    """The multiple a window's size must have for ``net`` (1: any)."""
    return int(getattr(net, "align", 1))


def halo_of(net: nn.Module) -> int:
    """Context pixels ``net`` needs on each side of a window."""
    return int(getattr(net, "halo", 0))


def pad_for(net: nn.Module, x: np.ndarray) -> np.ndarray:
    """``x`` padded for ``net`` exactly as tiled inference pads it (halo and alignment)."""
    return pad_for_tiles(x, halo_of(net), align_of(net))


def tile_boxes_for(net: nn.Module, shape: tuple[int, int], tile: int | None) -> list[Box]:
    """Output boxes of the inference tiles of an image of ``shape``, clipped to the image."""
    h, w = shape
    return [
        (r0, min(r1, h), c0, min(c1, w)) for r0, r1, c0, c1 in tile_grid(shape, align_of(net), tile)
    ]


def padded_window(padded: np.ndarray, box: Box, halo: int, align: int) -> torch.Tensor:
    """The padded input of output ``box`` (its size rounded up to the alignment), ``1, C, h, w``."""
    r0, r1, c0, c1 = box
    r1a, c1a = r0 + ceil_to(r1 - r0, align), c0 + ceil_to(c1 - c0, align)
    win = padded[:, r0 : r1a + 2 * halo, c0 : c1a + 2 * halo]
    return torch.from_numpy(np.array(win, np.float32, copy=True))[None]


def features_to_pixels(feat_map: torch.Tensor, window: tuple[int, int], halo: int) -> torch.Tensor:
    """Resample a layer's ``fh, fw`` map onto the output pixels of a window of ``window`` size.

    A layer's cell ``j`` sits at input position ``offset + s·j`` with stride
    ``s = round(window / fh)`` and ``offset = (window − s·fh) / 2`` (valid convolutions crop
    symmetrically); bilinear upsampling by ``s`` puts the cell centres where they belong.
    The result covers the window's output pixels (the window minus its halo).
    """
    wh, ww = window
    fh, fw = feat_map.shape[-2:]
    s = max(1, round(wh / fh))
    oy, ox = (wh - s * fh) // 2, (ww - s * fw) // 2
    if oy > halo or ox > halo:
        raise ExplainError("this layer does not cover the pixels it explains; pick another layer")
    up = (
        feat_map[None, None]
        if s == 1
        else F.interpolate(
            feat_map[None, None], scale_factor=s, mode="bilinear", align_corners=False
        )
    )
    return up[0, 0, halo - oy : wh - halo - oy, halo - ox : ww - halo - ox]


# ------------------------------------------------------------------------------ Grad-CAM
@dataclass
class GradCam:
    """A Grad-CAM map and how it was made.

    Attributes
    ----------
    map
        ``H, W`` float32 in [0, 1] (divided by its maximum), 0 outside ``extent``.
    layer
        The layer used.
    class_index
        The explained class (index into the model's classes).
    weights
        The channel weights ``α_k`` (mean gradient per channel, region-pixel normalised).
    score
        The explained score: the sum of the class's logit over the region.
    peak
        The map's maximum before normalisation (0: the class gets no positive evidence here).
    extent
        The box where the map is defined (the region's box grown by the halo).
    """

    map: np.ndarray
    layer: str
    class_index: int
    weights: np.ndarray
    score: float
    peak: float
    extent: Box


def check_inputs(x: np.ndarray, region: np.ndarray, class_index: int, n_classes: int) -> None:
    """Refuse (:class:`ExplainError`) an image, region or class index that does not fit."""
    if x.ndim != 3:
        raise ExplainError(f"expected a C, H, W image, got shape {x.shape}")
    if region.shape != x.shape[1:]:
        raise ExplainError(f"region shape {region.shape} differs from the image's {x.shape[1:]}")
    if not 0 <= class_index < n_classes:
        raise ExplainError(f"class index {class_index} is not one of the model's {n_classes}")
    if not region.any():
        raise ExplainError("the region is empty: choose at least one pixel")


def net_of(model: object) -> nn.Module:
    """The torch module of a classifier (or the module itself)."""
    net = getattr(model, "net", model)
    if not isinstance(net, nn.Module):
        raise ExplainError(
            "explanations need a neural network (unet or patch-cnn); the random forest has no "
            "gradients: train a unet to explain it"
        )
    return net


def class_count(net: nn.Module) -> int:
    """Classes the network predicts (its output convolution's channels; unbounded if unknown)."""
    out = getattr(net, "out", None)
    return int(out.out_channels) if isinstance(out, nn.Conv2d) else 1 << 30


def grad_cam_job(
    model: object,
    x: np.ndarray,
    class_index: int,
    region: np.ndarray,
    *,
    layer: str | None = None,
    tile: int | None = 512,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, GradCam]:
    """Grad-CAM of class ``class_index`` over ``region`` of a normalized image; a generator.

    Parameters
    ----------
    model
        A :class:`~napari_hitl.core.learning.net.NetClassifier` or a bare network.
    x
        ``C, H, W`` normalized image (not modified).
    class_index
        Index of the class in the model's classes.
    region
        ``H, W`` bool: the pixels whose class-c logits are explained.
    layer
        Module name (default :func:`default_layer`).
    tile
        Tile edge (``None``: one pass over the image).
    cancel
        Stops the job between tiles.

    Returns
    -------
    GradCam

    Raises
    ------
    ExplainError
        Bad shapes, an empty region, an unknown layer or a random forest.
    """
    net = net_of(model)
    region = np.asarray(region, bool)
    check_inputs(x, region, class_index, class_count(net))
    layer = layer or default_layer(net)
    halo, align = halo_of(net), align_of(net)
    shape = (x.shape[1], x.shape[2])
    extent = grow_box(bounding_box(region), halo, shape)
    padded = pad_for(net, x)
    boxes = tile_boxes_for(net, shape, tile)
    grad_boxes = [b for b in boxes if region[b[0] : b[1], b[2] : b[3]].any()]
    cam_boxes = [b for b in boxes if _overlap(b, extent)]
    total = len(grad_boxes) + len(cam_boxes)
    alpha: torch.Tensor | None = None
    score = 0.0
    out = np.zeros(shape, np.float32)
    with eval_mode(net), tapped(net, layer) as tap:
        for i, box in enumerate(grad_boxes):
            if cancel is not None:
                cancel.raise_if_cancelled()
            win = padded_window(padded, box, halo, align)
            with torch.enable_grad():
                logits = net(win)
                feat = tap.value
                assert feat is not None
                m = box_mask(region, box, logits.shape[-2:])
                s = logits[0, class_index][m].sum()
                (g,) = torch.autograd.grad(s, feat)
            part = g.detach().sum(dim=(0, 2, 3))
            alpha = part if alpha is None else alpha + part
            score += float(s.detach())
            yield Progress(i + 1, total, f"Grad-CAM gradients: tile {i + 1}/{len(grad_boxes)}")
        assert alpha is not None
        alpha = alpha / float(region.sum())
        for j, box in enumerate(cam_boxes):
            if cancel is not None:
                cancel.raise_if_cancelled()
            win = padded_window(padded, box, halo, align)
            with torch.no_grad():
                net(win)
                feat = tap.value
                assert feat is not None
                cam = F.relu((alpha[:, None, None] * feat[0]).sum(0))
                pix = features_to_pixels(cam, tuple(win.shape[-2:]), halo)
            r0, r1, c0, c1 = box
            out[r0:r1, c0:c1] = pix[: r1 - r0, : c1 - c0].numpy()
            yield Progress(len(grad_boxes) + j + 1, total, f"Grad-CAM map: tile {j + 1}")
    outside = np.ones(shape, bool)
    outside[extent[0] : extent[1], extent[2] : extent[3]] = False
    out[outside] = 0.0
    peak = float(out.max())
    if peak > 0:
        out /= peak
    return GradCam(out, layer, class_index, alpha.numpy().astype(np.float32), score, peak, extent)


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def box_mask(region: np.ndarray, box: Box, out_shape: tuple[int, ...]) -> torch.Tensor:
    """``region`` inside output ``box``, zero-padded to the network's (aligned) output shape."""
    r0, r1, c0, c1 = box
    m = np.zeros(tuple(out_shape), bool)
    m[: r1 - r0, : c1 - c0] = region[r0:r1, c0:c1]
    return torch.from_numpy(m)


def grad_cam(model: object, x: np.ndarray, class_index: int, region: np.ndarray, **kw) -> GradCam:
    """:func:`grad_cam_job` run to its end (no progress)."""
    from napari_hitl.core.progress import run_to_end

    return run_to_end(grad_cam_job(model, x, class_index, region, **kw))


def differentiable_cam(
    net: nn.Module,
    window: torch.Tensor,
    class_index: int,
    region: torch.Tensor,
    layer: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM on one padded window, differentiable with respect to the weights.

    The gradient of the score with respect to the layer is taken with ``create_graph=True``,
    so a loss on the map back-propagates into the network (attention guidance). The caller
    chooses the network's mode (fine-tuning keeps BatchNorm in eval mode).

    Parameters
    ----------
    net
        The network.
    window
        ``1, C, h + 2·halo, w + 2·halo`` input (aligned).
    class_index
        The class.
    region
        ``h, w`` bool tensor: the pixels whose logits are explained.
    layer
        The layer.

    Returns
    -------
    cam, logits
        The unnormalised ``h, w`` map (≥ 0) and the window's ``1, K, h, w`` logits.
    """
    halo = halo_of(net)
    with tapped(net, layer) as tap:
        logits = net(window)
        feat = tap.value
    assert feat is not None
    score = logits[0, class_index][region].sum()
    (g,) = torch.autograd.grad(score, feat, create_graph=True)
    alpha = g.sum(dim=(0, 2, 3)) / region.sum().clamp(min=1)
    cam = F.relu((alpha[:, None, None] * feat[0]).sum(0))
    return features_to_pixels(cam, tuple(window.shape[-2:]), halo), logits
