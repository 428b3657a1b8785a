"""The guiding block of "Guide Me" (Guide Me, §3.1) and a trained network cut around it.

Between the *head* h and the *tail* t of a trained network the block modifies the feature map
A = h(x) (``C`` channels, ``H × W``) as

    A'[c, y, x] = (1 + α(y) + β(x) + γˢ[c]) · A[c, y, x] + γᵇ[c]                      (eq. 2)

so the guided network computes y* = t(A') (eq. 3). γ re-weights channels (what the network
sees), α and β give spatial attention along rows and columns. All four vectors start at zero,
which makes the block the identity.

Coordinates
    α and β are *knots* spread evenly over the guided image's rows ``0 … H_img − 1`` and
    columns, and are linearly interpolated at the image coordinate of every feature-map row and
    column (the paper interpolates them to the feature map's size). By default there is one
    knot per feature row/column of the whole image, as in the paper. Defining them on image
    coordinates (not on a tile's feature map) makes the guided prediction independent of the
    tiling: a tiled guided prediction equals a whole-image one, and a small window around a
    hint sees exactly the α, β the whole image sees.

Head and tail
    :class:`NetSplit` cuts a :class:`~napari_hitl.core.learning.networks.SmallUNet` (layers
    ``enc2`` — the
    smallest encoding, the default — ``enc1``, ``enc0``) or a
    :class:`~napari_hitl.core.learning.networks.PatchCNN` (``fc1_act`` — its FC-100 code, the
    default —
    ``fc2_act``, ``conv_act``). The head's output (with the U-Net's skip connections) does not
    depend on the guide, so guiding computes it once and only runs the tail at every step;
    around sparse hints only a small window of the tail is needed (:func:`hint_windows`).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_hitl.core.errors import HitlError
from napari_hitl.core.learning.networks import PatchCNN, SmallUNet
from napari_hitl.core.learning.novelty import NoveltyGate
from napari_hitl.core.progress import CancelToken, Progress
from napari_hitl.core.tiling import ceil_to, pad_for_tiles, tiled_apply

State = dict[str, torch.Tensor]

# layer → (stride, centre of feature 0 in input-window pixels, tail margin in px) per network.
# The margin is how far (in input pixels) the tail looks around an output pixel; a window's
# state is cropped to the block plus this margin before the tail runs (tested exact).
_UNET_LAYERS = {"enc2": (4, 1.5, 4), "enc1": (2, 0.5, 16), "enc0": (1, 0.0, 24)}
_PATCH_LAYERS = {"fc1_act": (1, 12.0, 0), "fc2_act": (1, 12.0, 0), "conv_act": (1, 5.0, 0)}
GUIDE_LAYERS = {"unet": tuple(_UNET_LAYERS), "patch-cnn": tuple(_PATCH_LAYERS)}
DEFAULT_GUIDE_LAYER = {"unet": "enc2", "patch-cnn": "fc1_act"}


class GuideError(HitlError, ValueError):
    """Guiding cannot run as asked (no network model, unknown layer, bad hints)."""


# ---------------------------------------------------------------------------- the block
def interpolate_knots(knots: torch.Tensor, coords: torch.Tensor, extent: int) -> torch.Tensor:
    """Values of ``knots`` (spread evenly over ``0 … extent − 1``) at ``coords``, linearly
    interpolated; coordinates outside the extent take the end knots' values."""
    n = knots.shape[0]
    if n == 1:
        return knots[0].expand(coords.shape)
    t = (coords / max(extent - 1, 1) * (n - 1)).clamp(0, n - 1)
    i0 = t.floor().long().clamp(max=n - 2)
    w = t - i0.to(t.dtype)
    return knots[i0] * (1 - w) + knots[i0 + 1] * w


class GuidingBlock(nn.Module):
    """A' = (1 + α_h + β_w + γˢ_c)·A + γᵇ_c on a feature map, zero-initialized (the identity).

    Parameters
    ----------
    channels
        ``C`` of the guided feature map.
    image_shape
        ``(H, W)`` of the guided image, in pixels: α and β span it.
    knots
        ``(n_α, n_β)``, the number of α and β values.
    stride, shift
        Feature index ``i`` of a window whose pixel 0 lies at image coordinate ``o`` sits at
        ``o + i·stride + shift`` (set by :class:`NetSplit` for the chosen layer).
    """

    def __init__(
        self,
        channels: int,
        image_shape: tuple[int, int],
        knots: tuple[int, int],
        stride: int = 1,
        shift: float = 0.0,
    ) -> None:
        super().__init__()
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.stride, self.shift = int(stride), float(shift)
        self.alpha = nn.Parameter(torch.zeros(max(1, int(knots[0]))))
        self.beta = nn.Parameter(torch.zeros(max(1, int(knots[1]))))
        self.gamma_s = nn.Parameter(torch.zeros(int(channels)))
        self.gamma_b = nn.Parameter(torch.zeros(int(channels)))

    def forward(self, a: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
        """Guide ``a`` (``N, C, h, w``); ``origin`` (``N, 2``) is the image coordinate (row,
        col) of each window's pixel 0."""
        n, _c, h, w = a.shape
        steps_h = torch.arange(h, dtype=torch.float32) * self.stride + self.shift
        steps_w = torch.arange(w, dtype=torch.float32) * self.stride + self.shift
        rows = origin[:, :1].float() + steps_h[None]
        cols = origin[:, 1:].float() + steps_w[None]
        al = interpolate_knots(self.alpha, rows, self.image_shape[0])  # N, h
        be = interpolate_knots(self.beta, cols, self.image_shape[1])  # N, w
        scale = (
            1.0
            + al[:, None, :, None]
            + be[:, None, None, :]
            + self.gamma_s[None, :, None, None].expand(n, -1, 1, 1)
        )
        return scale * a + self.gamma_b[None, :, None, None]

    def is_identity(self) -> bool:
        """All guiding vectors are zero."""
        return all(bool((p == 0).all()) for p in self.parameters())

    def size(self) -> dict[str, float]:
        """Largest magnitude of each guiding vector (how far the guide has moved)."""
        return {name: float(p.detach().abs().max()) for name, p in self.named_parameters()}


# --------------------------------------------------------------------------- head / tail
@dataclass(frozen=True)
class _LayerGeometry:
    stride: int
    shift: float
    margin: int


def _through(block: GuidingBlock | None, origin: torch.Tensor):
    """The guiding step of a tail: feature maps through ``block`` (or unchanged)."""
    return lambda a: a if block is None else block(a, origin)


class NetSplit:
    """A trained network cut at ``layer`` into a head (run once) and a tail (run per step).

    The network is used in eval mode and never changed; pass an inference copy (e.g. with
    BatchNorm folded) whose parameters do not require gradients.

    Parameters
    ----------
    net
        A :class:`SmallUNet` or :class:`PatchCNN`.
    layer
        Where the guiding block goes (:data:`GUIDE_LAYERS`); ``None``: the default.
    """

    def __init__(self, net: nn.Module, layer: str | None = None) -> None:
        if isinstance(net, SmallUNet):
            kind, table = "unet", _UNET_LAYERS
        elif isinstance(net, PatchCNN):
            kind, table = "patch-cnn", _PATCH_LAYERS
        else:
            raise GuideError(
                f"test-time guiding needs the unet or patch-cnn model, not {type(net).__name__}"
            )
        layer = layer or DEFAULT_GUIDE_LAYER[kind]
        if layer not in table:
            raise GuideError(
                f"cannot guide layer {layer!r} of the {kind} model; choose one of "
                f"{', '.join(table)} (default {DEFAULT_GUIDE_LAYER[kind]})"
            )
        self.net, self.kind, self.layer = net, kind, layer
        self.geometry = _LayerGeometry(*table[layer])
        self.halo = int(net.halo)  # type: ignore[arg-type]
        # a U-Net with a filter bank takes input_margin off its windows before the U-Net proper:
        # the head's state starts that much further in, with the U-Net's own halo around it
        self.inner_halo = self.halo - int(getattr(net, "input_margin", 0))
        self.align = int(net.align)  # type: ignore[arg-type]
        self.channels = self._channels()

    def _channels(self) -> int:
        if self.kind == "unet":
            return {"enc0": 24, "enc1": 48, "enc2": 64}[self.layer]
        return 20 if self.layer == "conv_act" else 100

    def block(self, image_shape: tuple[int, int], knots: tuple[int, int] | None = None):
        """A zero (identity) :class:`GuidingBlock` for an image of ``image_shape``; ``knots``
        default to one per feature row / column of the image (the paper's α ∈ ℝᴴ, β ∈ ℝᵂ)."""
        s = self.geometry.stride
        if knots is None:
            knots = (ceil_to(image_shape[0], s) // s, ceil_to(image_shape[1], s) // s)
        return GuidingBlock(self.channels, image_shape, knots, s, self.geometry.shift)

    # -- the two halves
    def head(self, x: torch.Tensor) -> State:
        """Everything the tail needs from input windows ``x`` (``N, C, h, w``), no gradient."""
        net = self.net
        with torch.no_grad():
            if self.kind == "unet":
                e0 = net.enc0(net.unet_input(x))
                if self.layer == "enc0":
                    return {"e0": e0}
                e1 = net.enc1(F.max_pool2d(e0, 2))
                if self.layer == "enc1":
                    return {"e0": e0, "e1": e1}
                return {"e0": e0, "e1": e1, "e2": net.enc2(F.max_pool2d(e1, 2))}
            h = net.conv_act(net.conv(x - 0.5))
            if self.layer == "conv_act":
                return {"h": h}
            h = F.max_pool2d(h, 5, stride=1)
            h = net.fc1_act(F.conv2d(h, net.fc1.weight, net.fc1.bias, dilation=5))
            if self.layer == "fc1_act":
                return {"h": h}
            return {"h": net.fc2_act(net.fc2(h))}

    def tail(self, state: State, block: GuidingBlock | None, origin: torch.Tensor) -> torch.Tensor:
        """Logits from a head ``state`` whose windows start at image coordinates ``origin``.

        For the U-Net the logits have the size of ``e0`` (pixel ``j`` at ``origin + j``); for
        the patch CNN pixel ``j`` lies at ``origin + j + halo`` (its convolutions are valid).
        """
        if self.kind == "unet":
            return self.net.out(self.unet_features(state, block, origin))  # type: ignore[operator]
        return self._patch_tail(state, block, origin)

    def unet_features(
        self, state: State, block: GuidingBlock | None, origin: torch.Tensor
    ) -> torch.Tensor:
        """The U-Net's last feature map (before its 1×1 classifier) from a head ``state``."""
        net, guide = self.net, _through(block, origin)
        e0 = state["e0"]
        if self.layer == "enc0":
            e0 = guide(e0)
            e1 = net.enc1(F.max_pool2d(e0, 2))
        else:
            e1 = state["e1"]
        if self.layer == "enc1":
            e1 = guide(e1)
            e2 = net.enc2(F.max_pool2d(e1, 2))
        elif self.layer == "enc2":
            e2 = guide(state["e2"])
        else:
            e2 = net.enc2(F.max_pool2d(e1, 2))
        d1 = net.fuse1(torch.cat([F.interpolate(e2, size=e1.shape[-2:]), e1], 1))
        return net.fuse0(torch.cat([F.interpolate(d1, size=e0.shape[-2:]), e0], 1))

    def _patch_tail(
        self, state: State, block: GuidingBlock | None, origin: torch.Tensor
    ) -> torch.Tensor:
        net = self.net
        h = _through(block, origin)(state["h"])
        if self.layer == "conv_act":
            h = F.max_pool2d(h, 5, stride=1)
            h = net.fc1_act(F.conv2d(h, net.fc1.weight, net.fc1.bias, dilation=5))
        if self.layer in ("conv_act", "fc1_act"):
            h = net.fc2_act(net.fc2(h))
        return net.out(h)

    @property
    def out_shift(self) -> int:
        """Image offset of the tail's logits pixel 0 from the state's window origin."""
        return 0 if self.kind == "unet" else self.halo

    def crop_state(self, state: State, k: int) -> State:
        """``state`` with ``k`` input pixels cut off every side (``k`` a multiple of 4)."""
        if k == 0:
            return state
        strides = {"e0": 1, "e1": 2, "e2": 4, "h": 1}
        return {
            key: t[
                ...,
                k // strides[key] : t.shape[-2] - k // strides[key],
                k // strides[key] : t.shape[-1] - k // strides[key],
            ]
            for key, t in state.items()
        }

    # -- dense
    def logits_job(
        self,
        x: np.ndarray,
        block: GuidingBlock | None,
        tile: int | None = 1024,
        cancel: CancelToken | None = None,
        *,
        prior: np.ndarray | None = None,
        gate: NoveltyGate | None = None,
    ) -> Generator[Progress, None, np.ndarray]:
        """Guided logits ``K, H, W`` of a normalized ``C, H, W`` image, tile by tile.

        Tiled by :func:`napari_hitl.core.tiling.tiled_apply` (the classifier's padding and grid),
        so with a zero block, the model's class log ``prior`` and its novelty ``gate`` (U-Net)
        the result equals the classifier's own logits to float precision.
        """
        halo, inner = self.halo, self.inner_halo
        log_prior = None if prior is None else torch.from_numpy(np.asarray(prior, np.float32))

        def guided(window: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
            y0, y1, x0, x1 = box
            win = torch.from_numpy(window)[None]
            if self.kind == "unet":
                win = win.contiguous(memory_format=torch.channels_last)
            origin = torch.tensor([[y0 - inner, x0 - inner]])
            scale = None
            with torch.no_grad():
                if self.kind == "unet":
                    feats = self.unet_features(self.head(win), block, origin)
                    feats = feats[..., inner : inner + y1 - y0, inner : inner + x1 - x0]
                    logits = self.net.out(feats)[0]  # type: ignore[operator]
                    if gate is not None:
                        scale = gate.scale(feats[0])
                else:
                    logits = self.tail(self.head(win), block, origin)[0]
                if log_prior is not None:
                    logits = logits + log_prior[:, None, None]
                if scale is not None:  # as NetClassifier does: after the prior
                    logits = logits * scale[None]
            return logits.float().numpy()

        k = int(self.net.out.out_channels)  # type: ignore[union-attr]
        return (
            yield from tiled_apply(guided, x, k, halo, self.align, tile, cancel, pass_box=True,
                                   label="guided prediction: tile")
        )  # fmt: skip


# ----------------------------------------------------------------------- hint windows
@dataclass
class HintWindows:
    """The head's state around sparse pixels, ready to run the tail on.

    Attributes
    ----------
    state
        Head output of ``N`` windows, cropped to each block plus the tail's margin.
    origin
        ``N, 2`` image coordinates of each state window's pixel 0.
    index
        For every pixel asked for: ``(window, row, col)`` of its logit in the tail's output.
    """

    state: State
    origin: torch.Tensor
    index: tuple[torch.Tensor, torch.Tensor, torch.Tensor]

    def logits(self, split: NetSplit, block: GuidingBlock | None) -> torch.Tensor:
        """``P, K`` logits of the pixels (through ``block``), differentiable in its vectors."""
        out = split.tail(self.state, block, self.origin)
        n, r, c = self.index
        return out[n, :, r, c]


def hint_windows(
    split: NetSplit,
    x: np.ndarray,
    pixels: np.ndarray,
    block_size: int = 8,
    batch: int = 64,
) -> HintWindows:
    """Run the head once on small windows around ``pixels`` (``P, 2`` rows, cols).

    Pixels are grouped into ``block_size`` blocks (aligned); each block gets one window with the
    network's halo of context, read from the image reflect-padded exactly as for a dense
    prediction, so the logits equal the dense ones at those pixels (tested).
    """
    pixels = np.asarray(pixels, np.int64).reshape(-1, 2)
    _c, h, w = x.shape
    if pixels.size == 0:
        raise GuideError("no hint pixels")
    if (pixels < 0).any() or (pixels[:, 0] >= h).any() or (pixels[:, 1] >= w).any():
        raise GuideError(f"hint pixels must lie inside the {h}×{w} image")
    b = max(ceil_to(block_size, split.align), split.align)
    halo = split.halo
    padded = pad_for_tiles(x, halo, b)
    blocks, inverse = np.unique(pixels // b, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    g = split.geometry
    inner = split.inner_halo  # the head's state starts halo - inner into each window
    crop = inner - g.margin if split.kind == "unet" else 0
    states: list[State] = []
    for s in range(0, len(blocks), batch):
        part = blocks[s : s + batch] * b
        wins = np.stack([padded[:, y : y + b + 2 * halo, xx : xx + b + 2 * halo] for y, xx in part])
        t = torch.from_numpy(np.ascontiguousarray(wins))
        if split.kind == "unet":
            t = t.contiguous(memory_format=torch.channels_last)
        states.append(split.crop_state(split.head(t), crop))
    state = {key: torch.cat([st[key] for st in states]) for key in states[0]}
    origin = torch.from_numpy(blocks * b - inner + crop)
    local = pixels - (blocks[inverse] * b - inner + crop + split.out_shift)
    index = (
        torch.from_numpy(inverse),
        torch.from_numpy(local[:, 0]),
        torch.from_numpy(local[:, 1]),
    )
    return HintWindows(state, origin, index)
