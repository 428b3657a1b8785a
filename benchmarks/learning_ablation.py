"""Ablation of the learning engine's training aids: the simulated user (interaction none) with the
U-Net and each aid switched on alone, beside the default and ``rf`` in the same run.

Usage (from the repository root, after ``benchmarks/prepare_data.py``)::

    .venv/bin/python -u benchmarks/learning_ablation.py SET VARIANT [SEED] [THREADS] [ITERATIONS]
    .venv/bin/python benchmarks/learning_ablation.py --summarize

Variants: ``none`` (the default U-Net), ``rf`` (the forest), ``prop<W>`` (strokes spread to pure
superpixels at weight W, ``TrainConfig.propagate_weight``), ``potts<W>`` (relaxed Potts loss at
weight W, ``TrainConfig.potts_weight``), ``shrink<L>`` (``TrainConfig.warm_shrink``),
``mw<W>`` (``TrainConfig.machine_weight``), ``lovasz<W>`` (the Lovász-softmax loss at weight
W, ``TrainConfig.lovasz_weight``; the library's form of the ``lov<W>-`` probe), ``lr<R>``
(``TrainConfig.lr``: the fresh learning rate, warm starts at half of it),
``p<E>b<N>s<F>w<W>`` (U-Net crop edge E, N crops per step, F fresh and W warm steps; suffixes
above may follow), ``long`` (160/80 steps; its
recorded runs used the former 64² crops — with today's 16² crops it equals the default), ``pbn``
(BatchNorm statistics re-estimated after training, ``TrainConfig.precise_bn``), ``tta``
(flip test-time augmentation, ``TrainConfig.tta``), ``th<T>`` (the simulated user accepts at
confidence T instead of 0.95, e.g. ``p16b16s160w160th0.98-brier``, ``rfth0.6``,
``patch-cnnth0.6``), ``tb<S>`` (train for S
seconds instead of the step counts, ``TrainConfig.time_budget``, e.g.
``p16b16s160w160tb4-brier``), ``fb<S1>_<S2>...`` (the U-Net's filter-bank front end at scales
S1, S2, ..., ``TrainConfig.filter_bank``, e.g. ``p16b16s160w160fb1_2-brier``), ``row`` after a
digit (``TrainConfig.row_position``, e.g. ``p16b16s320w160row-brier``), ``ip<A>``
(``TrainConfig.image_power = A``; the default 0 since the twelfth session draws as the
``imbal-`` probe did, ``ip0.5`` as ``pow0.5-``, and ``p8b32s320w160ip1-brier`` is the default
before it), ``mg<M>`` (the accepting
margin in pixels instead of 1, e.g. ``p16b16s160w160mg0-brier``, ``rfmg0``), a suffix
``-brier`` or ``-nll`` (``TrainConfig.calibration``, for any model, e.g. ``rf-brier``) and ``bank``
(a probe of the filter-bank front end before it is built into the network; ``bank:1,2`` or
``bank:1,2:gradient,hessian`` choose its scales and kinds: the 84 features of
:class:`~napari_hitl.core.learning.filter_bank.FilterBank` — σ 1–8, on the first 3 principal
components for more than 3 bands — computed on each whole image with reflect borders and
appended to its bands), a prefix ``snap-`` (a probe of a two-snapshot ensemble: every warm U-Net
predicts the mean of its logits and the previous iteration's, see
:func:`_install_snapshot_ensemble`), a prefix ``oodc<F>-`` (``TrainConfig.novelty_gate = F``, the
novelty gate of :mod:`napari_hitl.core.learning.novelty`, which began as a probe here under that
name; ``oodc0-``: without it), a prefix ``soup-`` (a probe: after a warm Train the weights become
the mean of the new and the previous iteration's, see :func:`_install_weight_average`), a prefix
``imnorm-`` (a probe: each image's bands stretched by their own percentiles before the loop) and a
prefix ``ssl-`` (a probe of self-supervised pretraining: the U-Net first learns to fill in masked
blocks of the pool's own unlabeled pixels, see :func:`_ssl_pretrained_build`; e.g.
``ssl-p16b16s160w160-brier``) and a prefix ``rev-`` (a probe: before each push, machine labels the
new model contradicts are dropped, and pushed again with the new class where it is accepted; see
:func:`_install_machine_label_revision`) and ``stab-`` (a probe: pushed only where the previous
iteration's model accepted the same class too, :func:`_install_stable_push`) and ``ctx4-`` /
``ctx4m<M>-`` (a probe: a U-Net with a fourth scale, receptive field 33 px; ``m<M>``: training crops
with M px of context instead of 8; see :func:`_install_fourth_scale`) and ``imhold-`` (a probe: the
temperature is fitted on the strokes of whole images left out of training, see
:func:`_install_image_holdout`) and
``wlr<F>-`` (a probe: warm starts at F × the learning rate instead of 0.5×), ``ema<D>-`` (a
probe: a Train hands on the moving average of its weights over the steps, decay D; see
:func:`_install_weight_ema`) and ``prior<F>-``
(a probe: the U-Net's class log prior times F), ``emprior-`` (a probe: the class mixture
re-estimated on each predicted image by EM) and ``crf<W>-`` (a probe: a 5 × 5 local CRF on the
predictions at weight W; see :func:`_install_prediction_filter`), ``bscale-`` (a probe: the filter
bank's principal components rescaled to the bands' spread, :func:`_install_bank_scaling`) and
``autobank-`` (a probe: ``auto`` compares the U-Net with and without its filter bank,
:func:`_install_bank_candidate`) and ``mnorm-`` (a probe: the machine labels' loss divided by
every class labeled in the batch, :func:`_install_machine_class_norm`; ``mcap-``: no machine class
weighs more than a human class), ``ypos-`` (a probe: a band with each pixel's row height in its
image, :func:`_with_row_position`) and ``lab-`` (a probe: RGB images gain their CIELAB bands,
:func:`_with_lab`), ``ndi-`` (a probe: normalized-difference spectral indices — NDVI, NDWI, MNDWI,
NDBI — as bands where the band names allow, :func:`with_spectral_indices`), ``upright-`` (a probe:
training crops mirrored but never turned, :func:`_install_upright`), ``gjit-`` (a probe: the band
jitter's gain without its offset, :func:`_install_gain_jitter`), ``bdrop<P>-`` (a probe, with
``fb...``: each filter-bank channel of a training crop dropped with probability P,
:func:`_install_bank_dropout`), ``bneck<K>-`` (a probe, with ``fb...``: the filter bank's features
enter the U-Net through a learned 1×1 convolution to K channels, :func:`_install_bank_bottleneck`),
``hjit-`` (a probe: the jitter on the crops around human strokes only,
:func:`_install_human_jitter`), ``mero<D>-`` (a
probe: accepted pixels within D px of another label do not count in training,
:func:`_install_machine_erosion`), ``hs<S>-`` (a probe: a share S of each batch's crops on human
strokes instead of half, :func:`_install_human_share`), ``fm<W>-`` (a probe: FixMatch's consistency
on unlabeled crops at weight W, :func:`_install_consistency`), ``wd<D>-`` (a probe: AdamW's weight
decay D instead of 1e-4, :func:`_install_weight_decay`), ``drop<P>-`` (a probe: spatial dropout P
before the U-Net's classifier, :func:`_install_dropout`), ``imbal-`` (a probe: training crops
spread evenly over the images holding a class; ``pow<A>-``: an image drawn ∝ its pixels of the
class to the power A; ``hpx-``: spread on the half of each batch not on human strokes only;
``clip-``: an image drawn ∝ its pixels of the class, capped at the median over the images;
:func:`_install_image_balance`), ``cpow<A>-`` (a probe: a crop's class drawn ∝ its labeled
pixels to the power A instead of uniformly, :func:`_install_class_power`), ``agree-`` (a
probe, with ``unet+rf``: only pixels the forest calls the U-Net's class are pushed,
:func:`_install_agreement`), ``deep<N>-`` (a probe: N U-Nets of their own seeds, averaged,
:func:`_install_deep_ensemble`), ``zoom<S>-`` (a probe: training crops rescaled by a factor in
[1/S, S], :func:`_install_zoom`) and ``adabn-`` (a probe: BatchNorm statistics re-estimated
on crops anywhere in the images, :func:`_install_adabn`), ``gce<q>-`` (a probe: pushed pixels
learn through the generalized cross-entropy, :func:`_install_robust_machine_loss`),
``wide<F>-`` (a probe: the U-Net's channels times F, :func:`_install_wide`), ``last<N>-`` (a
probe: the loop's last Train fresh, N steps, :func:`_install_final_refit`) and two ceilings:
``full-`` (every pool pixel labeled by the person; run it with ITERATIONS 1,
:func:`_install_full_labels`; ``full-rf`` for the forest) and ``orc-`` (the simulator's
``oracle`` interaction: wrong pushes removed before each push); ``sf<F>-`` strokes a share F of
each seed image instead of the set's 1 %; ``typ-`` strokes the most typical image of each kind
instead of random seed images (``SimulationConfig.seed_choice = "typical"``); ``nohold-``
trains on every stroke and so fits no temperature (``TrainConfig.holdout_fraction = 0``; with
``prior0-`` and ``mg0`` the seed paper's protocol, e.g. ``nohold-prior0-patch-cnnmg0``);
``st<F>_<W>-`` trains any network F fresh and W warm steps (``st1200_400-patch-cnn``),
``pcst<F>_<W>-`` the patch CNN alone, also as an ensemble member (``pcst1200_400-unet+patch-cnn``);
``pcw<E>b<N>-`` (a probe: the patch CNN trained densely, N crops a step with E × E windows,
:func:`_set_patch_window`); ``pcs<K>-`` (a probe: images of more than K bands reduced to their
first K principal components, :func:`_principal_components`); ``ac<F>-`` (a probe,
auto-context: the U-Net reads the stroke-trained forest's class probabilities as more bands, out of
fold on the stroked images, F folds, default 3; ``ac<F>d<P>-``: a crop's forest channels uniform
with probability P; ``probe_auto_context.py``); ``ft<T>w<W>-`` (a probe: the forest of all strokes
labels the training images' unlabeled pixels it is at least T sure of, at weight W);
``mix<A>-``
(a probe: mixup of each batch with a shuffled copy, ``Beta(A, A)``, :func:`_install_mixup`),
``focal<G>-`` (a probe: the focal loss, :func:`_install_focal`), ``lov<W>-`` (plus W × the
Lovász-softmax loss: began as a probe, now sets ``TrainConfig.lovasz_weight`` like ``lovasz<W>``),
``lovh<W>-`` (a probe: that loss on the human pixels only, :func:`_install_human_lovasz`),
``lovf<W>-`` (a probe: that loss on a fresh network's Train only, :func:`_install_fresh_lovasz`)
and ``imean-`` (a probe: each band's image mean as a constant band, :func:`_with_image_means`).
An unknown prefix is refused. The prefixes may come in any order; :data:`PROBES` lists them.
ITERATIONS (default 10) shortens a run, e.g. to 1 for the first model alone. One JSON line per
run goes to ``benchmarks/results/learning/results.jsonl``; ``--summarize`` prints the table
(mean over seeds of the final test mIoU and of the mean over the 10 iterations — the iterations
jump by ±0.05, so the mean over them is the steadier figure).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run_simulations import SET_OPTIONS  # noqa: E402

CACHE = Path("~/.cache/napari-hitl/bench-data").expanduser()
RESULTS = HERE / "results" / "learning" / "results.jsonl"


def _bank_features(samples: list, spec: str = "") -> list:
    """The ``bank`` probe's features appended to the bands; ``spec`` is what follows ``bank``:
    ``""`` (σ 1–8, every kind) or ``":1,2"`` / ``":1,2:gradient,hessian"`` (sigmas, kinds)."""
    import torch

    from napari_hitl.core.evaluation.simulate import Sample
    from napari_hitl.core.learning.filter_bank import FilterBank, fit_projection

    flat = [s.bands.reshape(s.bands.shape[0], -1)[:, ::97] for s in samples]
    allb = np.concatenate(flat, 1).T.astype(np.float32)
    mu, sd = allb.mean(0), allb.std(0) + 1e-6
    proj = fit_projection((allb - mu) / sd, 3) if allb.shape[1] > 3 else None
    out = []
    for s in samples:
        z = (s.bands.astype(np.float32) - mu[:, None, None]) / sd[:, None, None]
        parts = spec.split(":")[1:]
        options = {}
        if parts and parts[0]:
            options["sigmas"] = [float(v) for v in parts[0].split(",")]
        if len(parts) > 1:
            options["features"] = parts[1].split(",")
        bank = FilterBank(z.shape[0], projection=proj, padding="reflect", **options)
        with torch.no_grad():
            f = bank(torch.from_numpy(z)[None])[0].numpy()
        out.append(Sample(s.name, np.concatenate([s.bands.astype(np.float32), f]), s.truth))
    return out


SSL_STEPS = 400  # masked-reconstruction pretraining steps of the ``ssl-`` probe
SSL_CROP = 40  # its crop edge
SSL_BLOCK = 4  # edge of the masked blocks
SSL_RATIO = 0.5  # share of blocks masked


def _ssl_pretrained_build(samples: list, seed: int, test_fraction: float):
    """A ``build_model`` whose U-Nets start from weights pretrained on the pool's own pixels.

    The probe of the issue's self-supervised auxiliary loss, before it is built into the
    library: the simulation's pool (its split replayed from the seed; the test images are not
    used) is normalized as the simulation does, and a U-Net with a 1×1 reconstruction head
    learns to fill in masked 4×4 blocks of every band from their surroundings (masked
    autoencoding; loss on the masked pixels). Every fresh network the loop builds — and the
    initial weights its shrink-and-perturb warm starts pull towards — then takes these
    weights, except the classifier layer, which is drawn as usual.
    """
    import torch
    from torch import nn

    from napari_hitl.core.learning.data import normalization_from_bands
    from napari_hitl.core.learning.networks import SmallUNet, build_model

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(samples))
    n_test = max(1, round(len(samples) * test_fraction))
    pool = [samples[i] for i in order[n_test:]]
    norm = normalization_from_bands([s.bands for s in pool])
    xs = [np.nan_to_num(norm.apply(s.bands)).astype(np.float32) for s in pool]
    c = xs[0].shape[0]
    torch.manual_seed(10_000 + seed)
    net = SmallUNet(c, 2)
    head = nn.Conv2d(24, c, 1)
    params = [*net.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=SSL_STEPS, pct_start=0.15)
    g = np.random.default_rng(20_000 + seed)
    e, nb = SSL_CROP, SSL_CROP // SSL_BLOCK
    net.train()
    for _ in range(SSL_STEPS):
        crops = []
        for _ in range(16):
            x = xs[int(g.integers(len(xs)))]
            h, w = x.shape[-2:]
            if h < e or w < e:
                x = np.pad(x, ((0, 0), (0, max(0, e - h)), (0, max(0, e - w))), mode="reflect")
                h, w = x.shape[-2:]
            r0, c0 = int(g.integers(h - e + 1)), int(g.integers(w - e + 1))
            crop = x[:, r0 : r0 + e, c0 : c0 + e]
            crop = np.rot90(crop, int(g.integers(4)), axes=(-2, -1))
            crops.append(np.ascontiguousarray(crop[..., ::-1] if g.random() < 0.5 else crop))
        x = torch.from_numpy(np.stack(crops))
        blocks = torch.from_numpy(g.random((16, 1, nb, nb)) < SSL_RATIO).float()
        m = blocks.repeat_interleave(SSL_BLOCK, -2).repeat_interleave(SSL_BLOCK, -1)
        pred = head(net.features(x * (1 - m)))
        loss = (((pred - x) ** 2) * m).sum() / (m.sum() * c + 1e-6)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    state = {k: v.detach().clone() for k, v in net.state_dict().items() if not k.startswith("out.")}

    def build(spec):
        model = build_model(spec)  # the classifier layer drawn under the caller's seed
        if spec.kind == "unet":
            model.load_state_dict({**model.state_dict(), **state})
        return model

    return build


def _install_snapshot_ensemble() -> None:
    """Probe: every warm-started U-Net predicts the mean of its logits and those of the model
    it replaced (the previous iteration's), a two-snapshot ensemble against the loop's swing."""
    import copy

    import torch

    from napari_hitl.core.learning.net import NetClassifier

    fit, forward = NetClassifier.fit, NetClassifier._forward

    def snap_fit(self, images, config, cancel=None):
        self._previous = copy.deepcopy(self._inference_net()) if self.trained else None
        return (yield from fit(self, images, config, cancel))

    def snap_forward(self, window):
        cur = forward(self, window)
        prev = getattr(self, "_previous", None)
        if prev is None:
            return cur
        x = torch.from_numpy(window)[None].contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            p = prev(x)[0].float().numpy()
        return 0.5 * (cur + self.class_log_prior[:, None, None]) + 0.5 * p

    NetClassifier.fit, NetClassifier._forward = snap_fit, snap_forward


def _install_weight_average() -> None:
    """Probe: after a warm Train, the weights (and BatchNorm statistics) become the mean of the
    new ones and the previous iteration's, before calibration — a two-model soup, free at
    inference, where ``snap-`` averages the two networks' outputs at twice the cost."""
    import copy

    import torch

    from napari_hitl.core.learning import net as net_module
    from napari_hitl.core.learning.net import NetClassifier

    fit, calibrate = NetClassifier.fit, net_module.calibrate

    def soup_fit(self, images, config, cancel=None):
        self._previous_state = copy.deepcopy(self.net.state_dict()) if self.trained else None
        return (yield from fit(self, images, config, cancel))

    def soup_calibrate(clf, *args, **kwargs):
        prev = getattr(clf, "_previous_state", None)
        if prev is not None:
            state = clf.net.state_dict()
            with torch.no_grad():
                for key, value in state.items():
                    if value.dtype.is_floating_point:
                        value.copy_(0.5 * (value + prev[key]))
            clf._eval_net = None
        return calibrate(clf, *args, **kwargs)

    NetClassifier.fit = soup_fit
    net_module.calibrate = soup_calibrate


def _install_weight_ema(decay: float) -> None:
    """Probe: the network a Train hands on (to calibration, prediction and the next warm
    start) is the exponential moving average of its weights over the training steps (decay
    ``min(decay, (1 + t) / (10 + t))`` at step t), not the last step's; BatchNorm statistics stay
    the live ones. 16 crops of 16² per step make each step's gradient noisy, and the
    iteration-to-iteration swing is the training's own variance (docs/learning-log.md).
    The warm-up caps the decay at 0.947 after 160 steps and 0.973 after 320."""
    import torch

    from napari_hitl.core.learning import net as net_module

    plain_adamw, calibrate = torch.optim.AdamW, net_module.calibrate
    last: dict[str, Any] = {}

    class EmaAdamW(plain_adamw):  # type: ignore[misc, valid-type]
        def __init__(self, params, *args, **kwargs):
            params = list(params)
            super().__init__(params, *args, **kwargs)
            self.ema_params = params
            self.ema = [q.detach().clone() for q in params]
            self.ema_t = 0
            last["opt"] = self

        def step(self, closure=None):
            out = super().step(closure)
            self.ema_t += 1
            d = min(decay, (1 + self.ema_t) / (10 + self.ema_t))
            with torch.no_grad():
                for e, q in zip(self.ema, self.ema_params, strict=True):
                    e.mul_(d).add_(q.detach(), alpha=1 - d)
            return out

    def ema_calibrate(clf, *args, **kwargs):
        opt = last.pop("opt", None)
        if opt is not None and any(q is opt.ema_params[0] for q in clf.net.parameters()):
            with torch.no_grad():
                for e, q in zip(opt.ema, opt.ema_params, strict=True):
                    q.copy_(e)
            clf._eval_net = None
        return calibrate(clf, *args, **kwargs)

    torch.optim.AdamW = EmaAdamW
    net_module.calibrate = ema_calibrate


def _remembering(accept_mask: Callable, last: dict) -> Callable:
    """``accept_mask`` that also leaves its latest mask in ``last["mask"]`` (the simulator
    calls it just before it pushes that image, so a wrapped ``push`` can read it)."""

    def accept_and_remember(confidence, *args, **kwargs):
        last["mask"] = accept_mask(confidence, *args, **kwargs)
        return last["mask"]

    return accept_and_remember


def _install_machine_label_revision() -> None:
    """Probe: before each push, machine labels the new model contradicts are revised.

    A machine-labeled pool pixel whose new prediction is another class loses its label; where
    that prediction passes the acceptance test it is pushed again with the new class (as this
    iteration's machine label). Human labels are never touched. Errors pushed early would
    otherwise stay in the training set for good."""
    from napari_hitl.core.evaluation import simulate as sim
    from napari_hitl.core.store import PROVENANCE_UNLABELED, machine_provenance

    plain_push = sim.push
    last: dict[str, np.ndarray] = {}

    def revising_push(labels, provenance, predicted, accept, iteration):
        machine = provenance >= machine_provenance(1)
        wrong = machine & (predicted != labels)
        if wrong.any():
            labels = np.where(wrong, 0, labels)
            provenance = np.where(wrong, PROVENANCE_UNLABELED, provenance)
            accept = accept | (wrong & last.pop("mask", np.zeros_like(wrong)))
        return plain_push(labels, provenance, predicted, accept, iteration)

    sim.accept_mask, sim.push = _remembering(sim.accept_mask, last), revising_push


def _install_stable_push() -> None:
    """Probe: a pixel is pushed only where the previous iteration's model accepted it too, as
    the same class (two models in a row sure of it); the first iteration pushes as usual. A
    pixel the loop's swing carries over the threshold once waits for the next model. Pool
    images are told apart by their order of pushes within an iteration, so it assumes every
    pool image is pushed each iteration (``pseudo="all"``, the benchmark's setting)."""
    from napari_hitl.core.evaluation import simulate as sim

    plain_push = sim.push
    last: dict[str, Any] = {"it": None, "j": 0}
    previous: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def stable_push(labels, provenance, predicted, accept, iteration):
        if iteration != last["it"]:
            last["it"], last["j"] = iteration, 0
        j = last["j"]
        last["j"] += 1
        sure = last.pop("mask")
        if j in previous:
            was_class, was_sure = previous[j]
            accept = accept & was_sure & (was_class == predicted)
        previous[j] = (predicted.copy(), sure.copy())
        return plain_push(labels, provenance, predicted, accept, iteration)

    sim.accept_mask, sim.push = _remembering(sim.accept_mask, last), stable_push


def _install_fourth_scale(margin: int | None) -> None:
    """Probe: the U-Net with a fourth scale (1/8, 64 channels) — a receptive field of 33 px
    instead of 18 (halo 40, tiles aligned to 8); ``margin``: the training crops' context."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from napari_hitl.core.learning import batches as batches_module
    from napari_hitl.core.learning import net as net_module
    from napari_hitl.core.learning import networks
    from napari_hitl.core.learning import weights as weights_module

    class FourScaleUNet(networks.SmallUNet):
        halo = 40
        align = 8

        def __init__(self, in_channels: int, n_classes: int) -> None:
            super().__init__(in_channels, n_classes)
            self.enc3 = networks._block(64, 64)
            self.fuse2 = nn.Sequential(nn.Conv2d(128, 64, 1), nn.BatchNorm2d(64), nn.ReLU(True))

        def unet_features(self, x, crop=0):
            e0 = self.enc0(x)
            e1 = self.enc1(F.max_pool2d(e0, 2))
            e2 = self.enc2(F.max_pool2d(e1, 2))
            e3 = self.enc3(F.max_pool2d(e2, 2))
            up = lambda a, b: F.interpolate(a, size=b.shape[-2:], mode="nearest")  # noqa: E731
            d2 = self.fuse2(torch.cat([up(e3, e2), e2], 1))
            d1 = self.fuse1(torch.cat([up(d2, e1), e1], 1))
            f = self.fuse0(torch.cat([up(d1, e0), e0], 1))
            return f[..., crop : f.shape[-2] - crop, crop : f.shape[-1] - crop] if crop else f

        def cropped_features(self, x):  # SmallUNet crops its own halo (24); this one 40
            f, h = self.features(x), self.halo
            return f[..., h : f.shape[-2] - h, h : f.shape[-1] - h]

        def forward(self, x):
            logits, h = self.out(self.features(x)), self.halo
            return logits[..., h : logits.shape[-2] - h, h : logits.shape[-1] - h]

    plain = networks.build_model

    def build(spec):
        if spec.kind == "unet":
            return FourScaleUNet(spec.in_channels, spec.n_classes)
        return plain(spec)

    net_module.build_model = build
    weights_module.build_model = build
    if margin is not None:
        batches_module.TRAIN_MARGIN = margin


def _install_image_holdout() -> None:
    """Probe: calibrate on the human strokes of whole images the network did not train on.

    Held-out strokes of a trained image look like its training strokes, so the temperature
    does not see how the network does on a new image — where the loop pushes. With three or
    more stroked images, ``round(15 %)`` of them (at least one) give all their human pixels to
    calibration, as long as every class keeps training strokes; otherwise strokes are held out
    as usual. The images' machine labels still train."""
    from napari_hitl.core.learning import net as net_module
    from napari_hitl.core.learning.data import LabeledImage

    plain = net_module.split_holdout

    def classes(images, human, ids):
        return {
            int(c)
            for j in ids
            for c in np.unique(images[j].target[human[j] & (images[j].target >= 0)])
        }

    def image_holdout(images, fraction, rng, human):
        stroked = [i for i, im in enumerate(images) if (human[i] & (im.target >= 0)).any()]
        if fraction <= 0 or len(stroked) < 3:
            return plain(images, fraction, rng, human)
        every, chosen = classes(images, human, stroked), []
        for i in rng.permutation(stroked):
            if len(chosen) == max(1, round(len(stroked) * fraction)):
                break
            rest = [j for j in stroked if j != i and j not in chosen]
            if classes(images, human, rest) == every:
                chosen.append(int(i))
        if not chosen:
            return plain(images, fraction, rng, human)
        train, held = [], []
        for i, im in enumerate(images):
            if i not in chosen:
                train.append(im)
                continue
            out = human[i] & (im.target >= 0)
            target, weight = im.target.copy(), im.weight.copy()
            target[out], weight[out] = -1, 0
            train.append(LabeledImage(im.name, im.x, target, weight, im.extra))
            held.append((i, np.flatnonzero(out)))
        return train, held

    net_module.split_holdout = image_holdout


def _install_warm_lr(factor: float) -> None:
    """Probe: a warm start trains at ``factor`` × the U-Net's learning rate instead of 0.5×."""
    import torch

    from napari_hitl.core.learning.config import MODEL_DEFAULTS

    fresh = MODEL_DEFAULTS["unet"]["lr"]

    class WarmAdamW(torch.optim.AdamW):
        def __init__(self, params, lr=1e-3, **kwargs):
            if abs(lr - 0.5 * fresh) < 1e-12:  # the library's warm learning rate
                lr = factor * fresh
            super().__init__(params, lr=lr, **kwargs)

    torch.optim.AdamW = WarmAdamW


def _install_weight_decay(decay: float) -> None:
    """Probe: the networks' AdamW decays the weights by ``decay`` instead of 1e-4 (decoupled
    weight decay, Loshchilov & Hutter 2019: a pull towards zero of ``lr × decay`` per step)."""
    import torch

    class DecayAdamW(torch.optim.AdamW):
        def __init__(self, params, lr=1e-3, **kwargs):
            kwargs["weight_decay"] = decay
            super().__init__(params, lr=lr, **kwargs)

    torch.optim.AdamW = DecayAdamW


def _install_dropout(p: float) -> None:
    """Probe: the U-Net's classifier sees its 24 feature channels through spatial dropout
    (``nn.Dropout2d(p)``: each crop loses whole channels in training; none in eval), so no
    class rests on one channel a few strokes happened to favour."""
    from torch import nn

    from napari_hitl.core.learning.networks import SmallUNet

    plain = SmallUNet.__init__

    def init(self, in_channels, n_classes, bank_sigmas=None):
        plain(self, in_channels, n_classes, bank_sigmas)
        self.out = nn.Sequential(nn.Dropout2d(p), self.out)

    SmallUNet.__init__ = init


def _install_wide(factor: float) -> None:
    """The ``wide<F>-`` probe: the U-Net's channels 24/48/64 become ``F`` times as many (the
    same three scales and receptive field; about ``F``² the multiply-adds)."""
    from napari_hitl.core.learning import networks

    plain = networks.SmallUNet.__init__
    widths = tuple(round(c * factor) for c in (24, 48, 64))

    def init(self, in_channels, n_classes, bank_sigmas=None, widths=widths):
        plain(self, in_channels, n_classes, bank_sigmas, widths)

    networks.SmallUNet.__init__ = init


def _tempered(sizes: np.ndarray, alpha: float) -> np.ndarray:
    """Cumulative probabilities ∝ ``sizes ** alpha`` (the sampler probes' tempered draws)."""
    w = np.asarray(sizes, float) ** alpha
    return np.cumsum(w / w.sum())


def _pick(cumulative: np.ndarray, rng: np.random.Generator) -> int:
    """An index drawn by the cumulative probabilities of :func:`_tempered` (one uniform)."""
    return min(int(np.searchsorted(cumulative, rng.random())), cumulative.size - 1)


def _install_image_balance(
    alpha: float | None = None, human_by_pixel: bool = False, clip: bool = False
) -> None:
    """Probe: each crop's class is drawn as before, then an image among those that hold the
    class (in the human or the whole pool), then one of its pixels of the class — instead of
    a pixel uniformly over all images, which gives an image crops in proportion to its
    labeled pixels (the nuclei's 12 stained slides against 53 gray ones; the pool images the
    first push labeled most).

    ``alpha`` ``None`` (``imbal-``): the image uniformly. A number (``pow<A>-``): the image
    with probability ∝ n^alpha for its n pixels of the class (tempered sampling, as
    multilingual language models draw their languages; 1 is the default's distribution by
    another random stream). ``human_by_pixel`` (``hpx-``): the half of each batch on human
    strokes keeps the default's draw (what the person painted more of weighs more), the
    other half is spread uniformly over the images. ``clip`` (``clip-``): the image with
    probability ∝ min(n, the median n over the images holding the class) — images with more
    than the median share equally, those with fewer keep their pixels' share, so a class
    painted on a few pixels of one image is not drawn as often as a whole image's worth.
    """
    from napari_hitl.core.learning.data import BalancedSampler, image_draw

    plain_init, plain_draw = BalancedSampler.__init__, BalancedSampler.draw
    uniform = alpha is None and not clip  # imbal-, hpx-: the library's image_power 0

    def tables(ids):
        starts, counts, cumulative = image_draw(ids, alpha or 0.0)
        if clip:
            w = np.minimum(counts, np.median(counts))
            cumulative = np.cumsum(w / w.sum())
        return starts, counts, cumulative

    def init(self, images, n_classes, rng, human=None, image_power=1.0):
        # the library's draw by image; a power other than 0 and 1 draws by the tables, which
        # the probe fills with its own weights (alpha 1 included: another stream than power 1)
        plain_init(self, images, n_classes, rng, human, 0.0 if uniform else 0.5)
        if not uniform:
            self.by_image = [[tables(ids) for ids, _ in pool] for pool in self.pools]

    def draw(self, n):
        if not (human_by_pixel and len(self.pools) > 1):
            return plain_draw(self, n)
        # hpx-: the human half drawn by pixel (power 1), the rest spread (power 0), in order
        h = int(self.human_share * n)
        share, power = self.human_share, self.image_power
        try:
            self.human_share, self.image_power = 1.0, 1.0
            out = plain_draw(self, h)
            self.human_share, self.image_power = 0.0, 0.0
            return out + plain_draw(self, n - h)
        finally:
            self.human_share, self.image_power = share, power

    BalancedSampler.__init__, BalancedSampler.draw = init, draw


def _install_class_power(alpha: float) -> None:
    """Probe: each crop's class drawn with probability ∝ n^alpha for the class's n labeled
    pixels in the pool drawn from, instead of uniformly (alpha 0); then a pixel of it
    uniformly over all images, as by default. A class painted on a few pixels is then not
    repeated in a ``1/K`` share of every batch (the loss still weighs every class the same)."""
    from napari_hitl.core.learning.data import BalancedSampler

    def draw(self, n):
        cache = self.__dict__.setdefault("class_cumulative", {})
        out = []
        for j in range(n):
            human = j < int(self.human_share * n) or len(self.pools) == 1
            p = 0 if human else len(self.pools) - 1
            if p not in cache:
                cache[p] = _tempered([ids.size for ids, _ in self.pools[p]], alpha)
            c = _pick(cache[p], self.rng)
            ids, flat = self.pools[p][c]
            k = int(self.rng.integers(0, ids.size))
            i = int(ids[k])
            r, col = divmod(int(flat[k]), self.widths[i])
            out.append((i, r, col))
        return out

    BalancedSampler.draw = draw


def _install_shared_jitter() -> None:
    """Probe: one gain and one offset shared by every band of a crop instead of one per band
    (a brightness change that keeps each pixel's spectrum's shape). ``nojit-`` (no band jitter)
    began here too and is now ``TrainConfig.band_jitter = False`` (the same runs)."""
    from napari_hitl.core.learning.batches import PatchBatches

    def jitter_params(self, rng):
        c = self.bands
        gain = np.float32(1.0 + 0.1 * rng.standard_normal())
        offset = np.float32(0.05 * rng.standard_normal())
        return np.full(c, gain, np.float32), np.full(c, offset, np.float32)

    PatchBatches.jitter_params = jitter_params


def _install_bank_dropout(p: float) -> None:
    """Probe: each filter-bank feature channel of a training crop is zeroed with probability
    ``p`` (the survivors scaled by ``1 / (1 - p)``, as ``nn.Dropout2d``), so the network cannot
    lean on a few texture channels that happen to separate the seed images' interior strokes;
    the raw bands are never dropped. The draws come from their own generator (seeded by the
    Train's count in the run), so the crops, turns and jitter are those of the run without it."""
    import torch

    from napari_hitl.core.learning.batches import PatchBatches

    plain_init, plain_call = PatchBatches.__init__, PatchBatches.__call__
    trains = [0]

    def init(self, images, n_classes, rng, *args, **kwargs):
        plain_init(self, images, n_classes, rng, *args, **kwargs)
        trains[0] += 1
        self.drop_rng = np.random.default_rng([0x5EED, trains[0]])

    def call(self):
        x, t, w = plain_call(self)
        if self.bank is not None:
            c = self.bands
            keep = self.drop_rng.random((x.shape[0], x.shape[1] - c)) >= p
            scale = torch.from_numpy(keep.astype(np.float32) / (1.0 - p))
            x[:, c:] *= scale[:, :, None, None]
        return x, t, w

    PatchBatches.__init__ = init
    PatchBatches.__call__ = call


def _install_bank_bottleneck(k: int) -> None:
    """Probe: a U-Net with a filter bank first maps the bank's features through a learned 1×1
    convolution to ``k`` channels (no bias, no activation) and feeds those beside the bands to
    its first 3×3 convolution, instead of all 56–84 features: the first convolution's weights on
    the features become rank ``k`` (84 × 24 × 9 weights → 84 × k + k × 24 × 9), fewer to fit to
    the seed images' texture and fewer multiply-adds per pixel. Without a bank the U-Net is the
    default's."""
    import torch
    from torch import nn

    from napari_hitl.core.learning import networks

    plain_init, plain_features = networks.SmallUNet.__init__, networks.SmallUNet.unet_features

    def init(self, in_channels, n_classes, bank_sigmas=None, widths=(24, 48, 64)):
        plain_init(self, in_channels, n_classes, bank_sigmas, widths)
        self.bneck = None
        if self.bank is not None:
            self.bneck = nn.Conv2d(self.bank.out_channels, k, 1, bias=False)
            self.bneck_bands = in_channels
            self.enc0 = networks._block(in_channels + k, widths[0])

    def unet_features(self, u):
        if getattr(self, "bneck", None) is not None:
            c = self.bneck_bands
            u = torch.cat([u[:, :c], self.bneck(u[:, c:])], 1)
        return plain_features(self, u)

    networks.SmallUNet.__init__ = init
    networks.SmallUNet.unet_features = unet_features


def _install_gain_jitter() -> None:
    """Probe: the per-band jitter's gain without its offset (the same draws; the offset is
    drawn and dropped). A shift of 0.05 is as large as a dim image's whole contrast in the
    normalized units (a fluorescence slide beside bright stained ones); a gain scales it."""
    from napari_hitl.core.learning.batches import PatchBatches

    plain = PatchBatches.jitter_params

    def jitter_params(self, rng):
        gain, offset = plain(self, rng)
        return gain, np.zeros_like(offset)

    PatchBatches.jitter_params = jitter_params


def _install_human_jitter() -> None:
    """Probe: only the crops around human strokes get the band jitter; the other half of each
    batch (drawn from all labels, mostly accepted predictions once the loop pushes) keeps its
    bands. The pushed labels span the pool's images, whose real band levels then teach what the
    jitter imitates. The first model (no machine labels yet) is the default's."""
    from napari_hitl.core.learning.batches import PatchBatches

    plain_call, plain_jitter = PatchBatches.__call__, PatchBatches.jitter_params

    def call(self):
        self._crop = 0
        return plain_call(self)

    def jitter_params(self, rng):
        gain, offset = plain_jitter(self, rng)  # drawn in any case: the same random stream
        j, self._crop = self._crop, self._crop + 1
        if len(self.sampler.pools) > 1 and j >= self.batch // 2 and self.sampler.machine:
            return np.ones_like(gain), np.zeros_like(offset)
        return gain, offset

    plain_init = PatchBatches.__init__

    def init(self, images, *args, **kwargs):
        plain_init(self, images, *args, **kwargs)
        self.sampler.machine = any(bool((im.weight[im.target >= 0] < 1).any()) for im in images)

    PatchBatches.__init__, PatchBatches.__call__ = init, call
    PatchBatches.jitter_params = jitter_params


def _install_machine_erosion(d: int) -> None:
    """Probe: accepted (machine) pixels within ``d`` px of another label or of an unlabeled
    pixel do not count in training (weight 0); their labels stay in the pool. A push's wrong
    pixels lie mostly on the rims of its regions (the nuclei's outlines), and training on them
    moves the next model's boundaries; the rims are then learned from the human strokes and the
    regions' insides alone."""
    from scipy import ndimage

    from napari_hitl.core.evaluation import simulate

    plain = simulate.make_labeled_image

    def eroded(name, x, labels, provenance, class_values, machine_weight, valid=None):
        im = plain(name, x, labels, provenance, class_values, machine_weight, valid)
        size = 2 * d + 1
        t = im.target
        inner = (ndimage.minimum_filter(t, size, mode="nearest") == t) & (
            ndimage.maximum_filter(t, size, mode="nearest") == t
        )
        machine = (im.weight > 0) & (im.weight < 1)
        im.weight[machine & ~inner] = 0.0
        return im

    simulate.make_labeled_image = eroded


def _install_human_share(share: float) -> None:
    """Probe: ``share`` of each batch's crops centred on human strokes instead of half (the
    rest on any label, mostly pushed ones once the loop has pushed)."""
    from napari_hitl.core.learning.data import BalancedSampler

    BalancedSampler.human_share = share


def _install_consistency(
    weight: float,
    threshold: float = 0.95,
    crops: int = 16,
    strength: float = 0.4,
    cutout: bool = False,
    balanced: bool = True,
    warm_only: bool = True,
) -> None:
    """Probe: FixMatch's consistency on unlabeled pixels (Sohn et al., NeurIPS 2020), dense.

    Each training step also draws ``crops`` crops centred on unlabeled pixels (the labeled
    crops' size, with random turns and flips, from a random stream of their own so that the
    labeled batches stay the default's). The network in eval mode (its running BatchNorm
    statistics: the model as it predicts) labels each crop's supervised window where its
    softmax reaches ``threshold``; a strongly changed copy of the crop (per-band gain ~
    N(1, 0.25 s), offset ~ N(0, 0.15 s), pixel noise 0.1 s for ``strength`` s; with
    ``cutout`` one 8 px square set to the band means) trains on those labels in the same
    forward as the labeled crops, at ``weight``: class-balanced
    (:func:`~napari_hitl.core.learning.losses.balanced_loss`) or, ``balanced=False``,
    FixMatch's mean over every unlabeled pixel. The first 32 steps of a Train skip it (a fresh
    network's BatchNorm statistics are not yet its own); ``warm_only`` skips the loop's first
    model (before any push). The measured runs used the defaults (``fm0.5-``); the 2–3
    iteration screens before them, on sen1floods seed 0, are in docs/learning-log.md.
    """
    import torch

    from napari_hitl.core.learning import net as net_module
    from napari_hitl.core.learning.batches import PatchBatches, turn_crops
    from napari_hitl.core.learning.losses import balanced_loss

    plain_init, plain_logits = PatchBatches.__init__, PatchBatches.logits_and_targets
    plain_loss = net_module.balanced_loss
    state: dict[str, Any] = {"draw": None}  # the batches the running Train draws from

    def init(self, images, *args, **kwargs):
        plain_init(self, images, *args, **kwargs)
        state["draw"] = self
        self.fm_rng = np.random.default_rng(7919 + len(images))
        self.fm_pixels = []
        for im in images:
            free = np.flatnonzero(im.target.ravel() < 0)
            self.fm_pixels.append(free if free.size else np.arange(im.target.size))
        sizes = np.array([f.size for f in self.fm_pixels], float)
        self.fm_p = sizes / sizes.sum() if sizes.sum() else None
        self.fm_calls, self.fm_loss = 0, None
        pushed = any(bool(((im.weight > 0) & (im.weight < 1)).any()) for im in images)
        if warm_only and not pushed:
            self.fm_p = None  # the first model of the loop: no consistency

    def unlabeled(self):
        rng, halo, out, r, c = self.fm_rng, self.halo, self.out_size, self.r, self.bands
        xs, ids = [], rng.choice(len(self.fm_pixels), size=crops, p=self.fm_p)
        for i in ids:
            flat = self.fm_pixels[i][int(rng.integers(self.fm_pixels[i].size))]
            row, col = divmod(int(flat), self.padded[i][1].shape[1] - 2 * r)
            y0, x0 = row + r - out // 2, col + r - out // 2
            px = self.padded[i][0]
            xs.append(px[:, y0 - halo : y0 + out + halo, x0 - halo : x0 + out + halo])
        turns = 2 * rng.integers(4, size=crops) + (rng.random(crops) < 0.5)
        weak = turn_crops(np.stack(xs).astype(np.float32), turns)  # N, e, e, C
        strong = weak.copy()
        for j, i in enumerate(ids):
            groups = self.copies[i] if self.copies else np.arange(c)
            gain = (1 + 0.25 * strength * rng.standard_normal(c)).astype(np.float32)[groups]
            offset = (0.15 * strength * rng.standard_normal(c)).astype(np.float32)[groups]
            strong[j, ..., :c] = strong[j, ..., :c] * gain + offset
        noise = rng.standard_normal(strong[..., :c].shape).astype(np.float32)
        strong[..., :c] += 0.1 * strength * noise
        e = weak.shape[1]
        for j in range(crops):
            y, x = rng.integers(0, e - 8, size=2)  # drawn in any case: the measured runs' stream
            if cutout:
                strong[j, y : y + 8, x : x + 8, :c] = 0.0
        return (
            torch.from_numpy(weak).permute(0, 3, 1, 2),
            torch.from_numpy(strong).permute(0, 3, 1, 2),
        )

    def logits_and_targets(self, net, x, t, w):
        self.fm_calls += 1
        self.fm_loss = None
        if self.is_patch or self.fm_p is None or self.fm_calls <= 32:
            return plain_logits(self, net, x, t, w)
        weak, strong = self.unlabeled()
        h = self.halo
        net.eval()
        with torch.no_grad():
            teacher = torch.softmax(net.out(self.features(net, weak))[..., h:-h, h:-h], 1)
        net.train()
        conf, pseudo = teacher.max(1)
        pseudo[conf < threshold] = -1
        both = torch.cat([x, strong]).contiguous(memory_format=torch.channels_last)
        logits = net.out(self.features(net, both))[..., h:-h, h:-h]
        n, k = x.shape[0], logits.shape[1]
        if not balanced:
            ce = torch.nn.functional.cross_entropy(
                logits[n:], pseudo.clamp(min=0), reduction="none"
            )
            self.fm_loss = (ce * (pseudo >= 0)).mean()
        elif bool((pseudo >= 0).any()):
            self.fm_loss = balanced_loss(logits[n:], pseudo, torch.ones_like(conf), k)
        return logits[:n], t, w

    def loss(logits, target, weight_, k):
        total = plain_loss(logits, target, weight_, k)
        draw = state["draw"]
        if draw is not None and draw.fm_loss is not None:
            total = total + weight * draw.fm_loss
        return total

    PatchBatches.__init__ = init
    PatchBatches.unlabeled = unlabeled
    PatchBatches.logits_and_targets = logits_and_targets
    net_module.balanced_loss = loss


def _install_agreement() -> None:
    """Probe (co-training's agreement, Blum & Mitchell 1998): with ``unet+rf``, the loop sees
    the U-Net's calibrated probabilities alone, except that where the forest's most likely
    class differs they are mixed half-and-half with uniform (so never accepted at 0.95). The
    argmax stays the U-Net's: only what is pushed changes. The two models err in different
    places (pixel features against learned context), so pixels both call the same class
    should more often be right."""
    from napari_hitl.core.learning.ensemble import EnsembleClassifier
    from napari_hitl.core.learning.prediction import softmax

    def average(self, logits):
        p = softmax(logits[0], self.members[0].temperature)
        differ = p.argmax(0) != logits[1].argmax(0)
        p[:, differ] = 0.5 * p[:, differ] + 0.5 / p.shape[0]
        return np.log(np.clip(p, 1e-6, 1.0))

    EnsembleClassifier._average = average


def _install_deep_ensemble(n: int) -> None:
    """Probe (a deep ensemble, Lakshminarayanan et al., NeurIPS 2017): ``n`` U-Nets, each with
    its own seed — its own initial weights, held-out strokes and crops — trained on the same
    labels and averaged by their calibrated probabilities (the ensemble class, whose members
    would otherwise share the seed and be one network twice). Members differ where the strokes
    do not decide, so their average is less sure there: an iteration's swing and its wrong
    pushes are what it is for. Step counts are each member's (``w80`` for two members costs
    one U-Net's training)."""
    import dataclasses

    from napari_hitl.core.learning.config import TrainJob
    from napari_hitl.core.learning.ensemble import EnsembleClassifier

    plain = EnsembleClassifier.fit

    def fit(self, images, config, cancel=None) -> TrainJob:
        members = self.members
        fits = [
            m.fit(images, dataclasses.replace(config, seed=config.seed + 7919 * i), cancel)
            for i, m in enumerate(members)
        ]
        self.members = [_Prefit(m, f) for m, f in zip(members, fits, strict=True)]
        try:
            return (yield from plain(self, images, config, cancel))
        finally:
            self.members = members

    from napari_hitl.core.evaluation import simulate

    single = simulate.make_classifier

    def make(kind, *args):
        if kind != "unet":
            return single(kind, *args)
        return EnsembleClassifier([single(kind, *args) for _ in range(n)])

    EnsembleClassifier.fit = fit
    simulate.make_classifier = make


class _Prefit:
    """A member whose ``fit`` returns the job already started with another configuration."""

    def __init__(self, member: Any, job: Any) -> None:
        self._member, self._job = member, job

    def fit(self, images, config, cancel=None):
        return self._job

    def __getattr__(self, name: str) -> Any:
        return getattr(self._member, name)


def _install_zoom(span: float) -> None:
    """Probe (scale augmentation): every U-Net training crop is resampled by a factor drawn
    log-uniformly in [1/span, span] about its centre pixel — bilinear for the bands, nearest for
    targets and weights — before the default's turns, flips and band jitter. Objects then
    appear at sizes the strokes never showed (nuclei of another magnification, a photo's near
    and far). The default's random draws are kept; the factors come from a second generator
    seeded from the first's state."""
    import torch
    import torch.nn.functional as F

    from napari_hitl.core.learning.batches import PatchBatches, turn_crops

    plain_init = PatchBatches.__init__

    def init(self, images, n_classes, rng, human, net, batch, patch, augment=True, *rest):
        plain_init(self, images, n_classes, rng, human, net, batch, patch, augment, *rest)
        if self.is_patch:
            return
        self.zoom_rng = np.random.default_rng(int(rng.bit_generator.state["state"]["state"]))
        edge = self.out_size + 2 * self.halo
        self.zoom_r = int(np.ceil(edge / 2 * span)) + 2
        self.zoom_padded = [
            (
                self._padded_input(im.x, self.zoom_r),
                np.pad(im.target, self.zoom_r, constant_values=-1),
                np.pad(im.weight, self.zoom_r),
            )
            for im in images
        ]

    def call(self):
        if self.is_patch:
            return plain_call(self)
        rng, halo, out_size = self.rng, self.halo, self.out_size
        R, edge = self.zoom_r, out_size + 2 * halo
        centres = self.sampler.draw(self.batch)
        n, c = len(centres), self.bands
        scales = np.exp(self.zoom_rng.uniform(-np.log(span), np.log(span), n))
        turns = np.zeros(n, np.intp)
        gains = np.ones((n, c), np.float32)
        offsets = np.zeros((n, c), np.float32)
        windows, ts, ws = [], [], []
        u = np.arange(edge) - edge // 2  # the crop's pixels about its centre, as by default
        v = np.arange(out_size) - out_size // 2
        for j, (i, row, col) in enumerate(centres):
            px, pt, pw = self.zoom_padded[i]
            windows.append(px[:, row : row + 2 * R + 1, col : col + 2 * R + 1])
            near = np.clip(np.round(R + v / scales[j]).astype(int), 0, 2 * R)
            ts.append(pt[row : row + 2 * R + 1, col : col + 2 * R + 1][np.ix_(near, near)])
            ws.append(pw[row : row + 2 * R + 1, col : col + 2 * R + 1][np.ix_(near, near)])
            if self.augment:
                turns[j] = 2 * int(rng.integers(4)) + (rng.random() < 0.5)
            if self.jitter:
                gain, offset = self.jitter_params(rng)
                gains[j], offsets[j] = gain[self.copies[i]], offset[self.copies[i]]
        size = 2 * R + 1  # grid_sample's coordinates (align_corners=False) of R + u / scale
        pos = R + u[None, :] / scales[:, None]
        norm = torch.from_numpy(((2 * pos + 1) / size - 1).astype(np.float32))
        gx = norm[:, None, :].expand(n, edge, edge)
        gy = norm[:, :, None].expand(n, edge, edge)
        grid = torch.stack([gx, gy], -1)
        src = torch.from_numpy(np.stack(windows).astype(np.float32, copy=False))
        x = F.grid_sample(src, grid, mode="bilinear", align_corners=False).numpy()
        x = turn_crops(np.ascontiguousarray(x), turns)
        if self.jitter:
            x[..., :c] = x[..., :c] * gains[:, None, None] + offsets[:, None, None]
        t = turn_crops(np.stack(ts), turns)
        w = turn_crops(np.stack(ws), turns)
        return torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(t), torch.from_numpy(w)

    plain_call = PatchBatches.__call__
    PatchBatches.__init__, PatchBatches.__call__ = init, call


def _install_adabn(cfg: Any) -> None:
    """Probe (AdaBN, Li et al. 2016, on the project's own pixels): after training, the
    U-Net's BatchNorm statistics are re-estimated (``TrainConfig.precise_bn``'s 16 batches)
    from crops centred on pixels drawn uniformly over the training images — labeled or not —
    instead of on labeled pixels. The training crops sit around strokes and confident pushes;
    prediction runs over every pixel, whose statistics are those of the whole image."""
    from napari_hitl.core.learning import net as net_module

    precise = net_module.recompute_batchnorm

    def recompute(net, draw, batches):
        sampler = draw.sampler
        sizes = [p[1].shape[0] - 2 * draw.r for p in draw.padded]
        area = np.array([h * w for h, w in zip(sizes, sampler.widths, strict=True)], float)
        cumulative = np.cumsum(area / area.sum())

        def uniform(n):
            out = []
            for _ in range(n):
                i = _pick(cumulative, sampler.rng)
                out.append(
                    (
                        i,
                        int(sampler.rng.integers(sizes[i])),
                        int(sampler.rng.integers(sampler.widths[i])),
                    )
                )
            return out

        labeled, sampler.draw = sampler.draw, uniform
        try:
            precise(net, draw, batches)
        finally:
            sampler.draw = labeled

    net_module.recompute_batchnorm = recompute
    cfg.train.precise_bn = True


def _install_upright() -> None:
    """Probe: training crops are mirrored left-right but never turned or flipped upside down
    (photos taken upright: the sky stays up). The same random draws as the default; each
    crop's quarter turn is dropped and its mirror kept."""
    from napari_hitl.core.learning import batches

    turn = batches.turn_crops

    def upright(a, turns):
        return turn(a, turns % 2)

    batches.turn_crops = upright


def _install_data_jitter() -> None:
    """Probe: the per-band jitter as large as the training images' own band levels vary.

    For each training image, each band's mean less the mean over its bands (its relative band
    level, in the normalized units the network sees); the offset's standard deviation per band
    is that level's spread over the images, and the gain's twice it (the default's ratio, 0.1 /
    0.05). The same draws as the default, scaled; with one image, the default's amplitudes."""
    from napari_hitl.core.learning.batches import PatchBatches

    plain_init = PatchBatches.__init__

    def init(self, images, *args, **kwargs):
        plain_init(self, images, *args, **kwargs)
        c = self.bands
        self.offset_sd = np.full(c, 0.05, np.float32)
        if len(images) > 1 and c > 1:
            levels = np.array([np.nanmean(im.x[:c].reshape(c, -1), axis=1) for im in images])
            rel = levels - levels.mean(axis=1, keepdims=True)
            self.offset_sd = np.nan_to_num(rel.std(axis=0)).astype(np.float32)
        elif len(images) > 1:  # one band: its level's spread
            levels = np.array([np.nanmean(im.x[0]) for im in images])
            self.offset_sd = np.full(1, np.nanstd(levels), np.float32)
        print(f"djit: offset sd mean {self.offset_sd.mean():.3f} over {len(images)} images")

    def jitter_params(self, rng):
        c = self.bands
        gain = 1.0 + 2 * self.offset_sd * rng.standard_normal(c).astype(np.float32)
        offset = self.offset_sd * rng.standard_normal(c).astype(np.float32)
        return gain.astype(np.float32), offset.astype(np.float32)

    PatchBatches.__init__ = init
    PatchBatches.jitter_params = jitter_params


def _install_cropped_decoder() -> None:
    """Probe: the U-Net's last full-resolution block (``fuse0``, a quarter of its work) runs
    in training on the supervised window and its one-pixel ring only, not on the margin — the
    same network in eval mode, but ``fuse0``'s BatchNorm takes its batch statistics there."""
    import torch
    import torch.nn.functional as F

    from napari_hitl.core.learning.batches import PatchBatches

    def features(self, net, x):
        u = x if self.bank is not None else net.unet_input(x)
        e0 = net.enc0(u)
        e1 = net.enc1(F.max_pool2d(e0, 2))
        e2 = net.enc2(F.max_pool2d(e1, 2))
        d1 = net.fuse1(torch.cat([F.interpolate(e2, size=e1.shape[-2:], mode="nearest"), e1], 1))
        z = torch.cat([F.interpolate(d1, size=e0.shape[-2:], mode="nearest"), e0], 1)
        c = self.halo - 1
        z = z[..., c : z.shape[-2] - c, c : z.shape[-1] - c]
        return net.fuse0(z)[..., 1:-1, 1:-1]

    def logits_and_targets(self, net, x, t, w):  # the features are the window's already
        return net.out(self.features(net, x)), t, w

    PatchBatches.features = features
    PatchBatches.logits_and_targets = logits_and_targets


def _install_prior_scale(factor: float) -> None:
    """Probe: the U-Net's class log prior (from the human strokes' class frequencies) times
    ``factor`` (0 = none, 1 = the default). The forest keeps its own."""
    from napari_hitl.core.learning import net as net_module

    original = net_module.class_log_prior

    def scaled(counts, smoothing=1.0):
        return (factor * original(counts, smoothing)).astype(np.float32)

    net_module.class_log_prior = scaled


def _install_bank_scaling() -> None:
    """Probe: the filter bank's principal components rescaled to the bands' own spread (each
    component's standard deviation on the samples = the bands' mean one) instead of unit-length
    axes, whose first component adds up all the bands."""
    import torch

    from napari_hitl.core.learning import net as net_module
    from napari_hitl.core.learning import weights

    original = weights.fit_bank_projection

    def scaled(net, images, seed):
        original(net, images, seed)
        bank = getattr(net, "bank", None)
        if bank is None or bank.projection is None:
            return
        flat = np.concatenate([im.x.reshape(im.x.shape[0], -1)[:, ::53] for im in images], 1)
        proj = bank.projection.numpy().astype(np.float64)
        spread = (proj @ flat).std(1) + 1e-8
        target = flat.std(1).mean()
        with torch.no_grad():
            bank.projection.copy_(torch.from_numpy(proj * (target / spread)[:, None]).float())

    net_module.fit_bank_projection = scaled


def _install_bank_candidate() -> None:
    """Probe: ``auto`` compares the U-Net with and without its filter bank (candidates
    ``unet`` and ``unet:bank``) on held-out strokes; the loop then trains the plain U-Net
    (run it with one iteration: the record's ``model_choice`` holds the two scores)."""
    from dataclasses import replace

    from napari_hitl.core.choices import FILTER_BANK_SIGMAS
    from napari_hitl.core.learning import auto

    class Banked:
        def __init__(self, clf):
            self.clf = clf

        def __getattr__(self, name):
            return getattr(self.clf, name)

        def fit(self, images, config, cancel=None):
            banked = replace(config, filter_bank=list(FILTER_BANK_SIGMAS))
            return self.clf.fit(images, banked, cancel)

    original = auto.choose_model

    def choose(images, config, make, candidates=None, cancel=None):
        def build(kind):
            return Banked(make("unet")) if kind == "unet:bank" else make(kind)

        choice = yield from original(
            images, config, build, candidates=("unet", "unet:bank"), cancel=cancel
        )
        return replace(choice, kind="unet")

    auto.choose_model = choose


def _install_machine_class_norm(cap: bool = False) -> None:
    """The ``mnorm-`` probe: the machine labels' loss is summed over their classes and divided by
    the number of classes labeled anywhere in the batch, not averaged over the machine classes
    alone — so one class that holds most of the pushed pixels no longer weighs as much as all
    the human classes together. ``cap`` (the ``mcap-`` probe): the machine term stays averaged
    over its own classes, but no machine class weighs more than one human class of the batch."""
    from napari_hitl.core.learning import net as net_module
    from napari_hitl.core.learning.losses import class_losses

    def balanced_loss(logits, target, weight, k):
        human, machine, total = class_losses(logits, target, weight, k)
        if human is not None:
            total = total + human.per_class.mean()
        if machine is None:
            return total
        n_machine = int(machine.present.sum())
        if cap:  # each machine class at most one human class's weight
            n_human = int(human.present.sum()) if human is not None else 1
            per_class = min(machine.weight / n_machine, 1.0 / n_human)
        else:  # divided by every class labeled in the batch
            labeled = machine.present if human is None else machine.present | human.present
            per_class = machine.weight / int(labeled.sum())
        return total + per_class * machine.per_class.sum()

    net_module.balanced_loss = balanced_loss


def _install_robust_machine_loss(q: float) -> None:
    """The ``gce<q>-`` probe: machine-accepted pixels learn through the generalized
    cross-entropy ``(1 - p_y^q) / q`` (Zhang & Sabuncu, NeurIPS 2018) instead of the
    cross-entropy, a loss that is robust to wrong labels — a pushed pixel the network strongly
    disagrees with pulls with ``p_y^q`` of the cross-entropy's gradient. Human pixels keep the
    cross-entropy; both groups stay class-balanced as in ``balanced_loss``."""
    import torch
    import torch.nn.functional as F

    from napari_hitl.core.learning import losses
    from napari_hitl.core.learning import net as net_module

    def balanced_loss(logits, target, weight, k):
        t = target.clamp(min=0)
        logp_y = F.log_softmax(logits, 1).gather(1, t[:, None])[:, 0]
        human = weight * (target >= 0) >= 1.0
        per_px = torch.where(human, -logp_y, (1 - torch.exp(q * logp_y)) / q)
        return losses.balanced_loss(logits, target, weight, k, per_pixel=per_px)

    net_module.balanced_loss = balanced_loss


def _install_mixup(alpha: float) -> None:
    """The ``mix<a>-`` probe: mixup (Zhang et al., ICLR 2018) on the training crops. Each batch
    is blended with a shuffled copy of itself, ``x = l x + (1 - l) x[perm]`` with one
    ``l ~ Beta(a, a)`` per batch (halo and extra channels alike), and the loss is the same blend
    of the two batches' class-balanced losses, each on its own labels — the segmentation form
    that keeps sparse labels sparse. For spectral bands a blend is also what a mixed pixel is."""
    import torch

    from napari_hitl.core.learning import batches
    from napari_hitl.core.learning import net as net_module

    call, loss = batches.PatchBatches.__call__, net_module.balanced_loss
    state: dict = {}

    def draw(self):
        x, t, w = call(self)
        lam = float(self.rng.beta(alpha, alpha))
        perm = torch.from_numpy(self.rng.permutation(len(x)))
        lam = max(lam, 1 - lam)  # the batch's own crops dominate
        state["mix"] = (lam, t[perm], w[perm])
        return lam * x + (1 - lam) * x[perm], t, w

    def balanced_loss(logits, target, weight, k):
        lam, t2, w2 = state.pop("mix", (1.0, None, None))
        out = loss(logits, target, weight, k)
        if t2 is None or lam >= 1.0:
            return out
        return lam * out + (1 - lam) * loss(logits, t2, w2, k)

    batches.PatchBatches.__call__ = draw
    net_module.balanced_loss = balanced_loss


def _install_focal(gamma: float) -> None:
    """The ``focal<g>-`` probe: every labeled pixel learns through the focal loss
    ``-(1 - p_y)^g log p_y`` (Lin et al. 2017) instead of the cross-entropy, class-balanced as in
    ``balanced_loss``. It stops pushing pixels the network already gets right towards certainty,
    which Mukhoti et al. (NeurIPS 2020) found keeps networks calibrated."""
    import torch.nn.functional as F

    from napari_hitl.core.learning import losses
    from napari_hitl.core.learning import net as net_module

    def balanced_loss(logits, target, weight, k):
        logp_y = F.log_softmax(logits, 1).gather(1, target.clamp(min=0)[:, None])[:, 0]
        per_px = -((1 - logp_y.exp()).clamp(min=0) ** gamma) * logp_y
        return losses.balanced_loss(logits, target, weight, k, per_pixel=per_px)

    net_module.balanced_loss = balanced_loss


def _install_human_lovasz(cfg: Any, weight: float) -> None:
    """The ``lovh<W>-`` probe: ``TrainConfig.lovasz_weight`` W, the Lovász-softmax loss on the
    batch's human pixels only (weight 1 in ``balanced_loss``; pushed pixels weigh
    ``machine_weight`` < 1) — the overlap surrogate on the labels the person vouches for,
    while pushed labels still train through the cross-entropy."""
    from napari_hitl.core.learning import net as net_module

    if not cfg.train.machine_weight < 1:
        raise SystemExit("lovh- tells human pixels by a machine weight < 1")
    cfg.train.lovasz_weight = weight
    plain_loss, plain_lovasz, last = net_module.balanced_loss, net_module.lovasz_softmax, {}

    def balanced_loss(logits, target, w, k):
        last["w"] = w
        return plain_loss(logits, target, w, k)

    def lovasz_softmax(logits, target, labeled):
        return plain_lovasz(logits, target, labeled & (last["w"] >= 1))

    net_module.balanced_loss = balanced_loss
    net_module.lovasz_softmax = lovasz_softmax


def _install_fresh_lovasz(weight: float) -> None:
    """The ``lovf<W>-`` probe: the Lovász-softmax loss at weight W on a fresh network's Train
    only (the first model, which it lifts on five sets of six); warm Trains, whose pushes it
    makes surer and less often right on fields and photos, train without it."""
    from napari_hitl.core.learning.net import NetClassifier

    fit = NetClassifier.fit

    def fresh_lovasz_fit(self, images, config, cancel=None):
        config.lovasz_weight = 0.0 if self.trained else weight
        return (yield from fit(self, images, config, cancel))

    NetClassifier.fit = fresh_lovasz_fit


def _install_prediction_filter(kind: str, weight: float = 0.0) -> None:
    """Probe: every prediction of the simulated loop (pool and test) is made from changed
    logits: ``"em"`` re-estimates the class mixture on each image by EM (Saerens et al. 2002,
    10 steps from the strokes' frequencies); ``"crf"`` runs five mean-field steps of a Potts CRF
    in a 5 × 5 window whose affinities are the band differences, at ``weight``."""
    import torch
    import torch.nn.functional as F

    from napari_hitl.core.evaluation import simulate as sim_module
    from napari_hitl.core.learning.prediction import prediction_from_logits, softmax

    def em(z, prior, t):
        base = z - prior[:, None, None]
        pi = np.exp(prior) / np.exp(prior).sum()
        for _ in range(10):
            p = softmax(base + np.log(pi)[:, None, None], t)
            pi = np.clip(p.reshape(p.shape[0], -1).mean(1), 1e-4, 1)
            pi /= pi.sum()
        return base + np.log(pi)[:, None, None], t

    def crf(z, x, t, radius=2):
        k, (h, w) = 2 * radius + 1, z.shape[1:]
        with torch.no_grad():
            u = torch.from_numpy(np.ascontiguousarray(z, np.float32)) / float(t)
            xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
            pad = F.pad(xt[None], (radius,) * 4, mode="reflect")
            d = ((F.unfold(pad, k).view(xt.shape[0], k * k, h, w) - xt[:, None]) ** 2).mean(0)
            pos = d[d > 0]
            s2 = float(pos.median()) if pos.numel() else 1.0
            kern = torch.exp(-d / (2 * s2 + 1e-12))
            kern[k * k // 2] = 0
            kern /= kern.sum(0, keepdim=True) + 1e-12
            q, out = torch.softmax(u, 0), u
            for _ in range(5):
                qp = F.unfold(F.pad(q[None], (radius,) * 4, mode="reflect"), k)
                out = u + weight * (qp.view(z.shape[0], k * k, h, w) * kern[None]).sum(1)
                q = torch.softmax(out, 0)
        return out.numpy(), 1.0

    def predict(classifier, x, valid=None, tile="auto", cancel=None):
        if tile == "auto":
            tile = int(getattr(classifier, "default_tile", 512))
        z = yield from classifier.logits_job(x, tile, cancel)
        t = classifier.temperature
        prior = np.asarray(classifier.class_log_prior, np.float64)
        z, t = em(z, prior, t) if kind == "em" else crf(z, x, t)
        return prediction_from_logits(z, classifier.class_values, t, valid)

    sim_module.predict_normalized = predict


def _per_image_normalized(samples: list) -> list:
    """Probe: every band of every image stretched by its own 1st–99.8th percentiles (the
    microscopy habit, e.g. CSBDeep's ``normalize``), before the loop's store-wide statistics."""
    from napari_hitl.core.evaluation.simulate import Sample

    out = []
    for s in samples:
        b = s.bands.astype(np.float32)
        lo, hi = np.percentile(b.reshape(b.shape[0], -1), [1, 99.8], axis=1)
        b = (b - lo[:, None, None]) / np.maximum(hi - lo, 1e-6)[:, None, None]
        out.append(Sample(s.name, b, s.truth))
    return out


def _with_extra_bands(samples: list, extra: Callable[[Any], np.ndarray]) -> list:
    """``samples`` with ``extra(sample)`` (``K, H, W``) appended to each one's bands, as
    float32: the probes that hand the network a cue as more bands (``ypos-``, ``imean-``,
    ``lab-``, ``ndi-``)."""
    from napari_hitl.core.evaluation.simulate import Sample

    return [
        Sample(s.name, np.concatenate([s.bands.astype(np.float32), extra(s)]), s.truth)
        for s in samples
    ]


def _with_row_position(samples: list) -> list:
    """The ``ypos-`` probe: each image gains a band holding its row's height in the image
    (0 at the top, 1 at the bottom) — a location cue for photos, whose sky is up."""

    def rows(s: Any) -> np.ndarray:
        h, w = s.bands.shape[-2:]
        return np.broadcast_to(np.linspace(0, 1, h, dtype=np.float32)[:, None], (h, w))[None]

    return _with_extra_bands(samples, rows)


def _with_image_means(samples: list) -> list:
    """The ``imean-`` probe: each image gains one constant band per band, holding that band's mean
    over the image — image-level context (what kind of scene this is) that a network seeing
    18 px cannot gather; every tile and crop of an image sees the same values."""
    # in each band's own 1st-99th percentile range over all images (bands only, no labels): a
    # constant band has p1 == p99 in every image, so the normalization would leave its scale
    pixels = np.concatenate([s.bands.reshape(len(s.bands), -1)[:, ::97] for s in samples], axis=1)
    lo, hi = np.nanpercentile(pixels, 1, axis=1), np.nanpercentile(pixels, 99, axis=1)

    def means(s: Any) -> np.ndarray:
        m = np.nanmean(s.bands.reshape(len(s.bands), -1).astype(np.float64), axis=1)
        scaled = ((m - lo) / np.maximum(hi - lo, 1e-12)).astype(np.float32)
        return np.broadcast_to(scaled[:, None, None], s.bands.shape)

    return _with_extra_bands(samples, means)


def _principal_components(samples: list, k: int) -> list:
    """The ``pcs<K>-`` probe: images of more than K bands keep only their first K principal
    components (each band standardized over all images first; the axes fitted on strided
    pixels of every image, no labels) — a cheaper input for a network whose first layer's cost
    grows with the bands."""
    from napari_hitl.core.evaluation.simulate import Sample

    if samples[0].bands.shape[0] <= k:
        return samples
    pixels = np.concatenate(
        [s.bands.reshape(len(s.bands), -1)[:, ::97].astype(np.float64) for s in samples], axis=1
    )
    pixels = pixels[:, np.isfinite(pixels).all(axis=0)]
    mean, std = pixels.mean(axis=1), np.maximum(pixels.std(axis=1), 1e-12)
    z = (pixels - mean[:, None]) / std[:, None]
    axes = np.linalg.svd(z, full_matrices=False)[0][:, :k].T  # k, C

    def project(s: Any) -> np.ndarray:
        b = (s.bands.astype(np.float64) - mean[:, None, None]) / std[:, None, None]
        return np.einsum("kc,chw->khw", axes, b).astype(np.float32)

    return [Sample(s.name, project(s), s.truth) for s in samples]


def _with_lab(samples: list) -> list:
    """The ``lab-`` probe: RGB images gain their CIELAB bands (scikit-image's ``rgb2lab``)."""
    from skimage.color import rgb2lab

    def lab(s: Any) -> np.ndarray:
        rgb = np.moveaxis(s.bands[:3].astype(np.float32), 0, -1) / 255.0
        return np.moveaxis(rgb2lab(rgb), -1, 0).astype(np.float32)

    return _with_extra_bands(samples, lab)


# Normalized-difference indices (a - b) / (a + b) by band name: Sentinel-2 (NDVI, McFeeters'
# NDWI, MNDWI, NDBI) and red/green/NIR cameras (NDVI, NDWI).
SPECTRAL_INDICES = {
    "s2": {
        "ndvi": ("B08", "B04"),
        "ndwi": ("B03", "B08"),
        "mndwi": ("B03", "B11"),
        "ndbi": ("B11", "B08"),
    },
    "rgbn": {"ndvi": ("nir", "red"), "ndwi": ("green", "nir")},
}


def _band_names(set_name: str) -> list[str]:
    """The band names of a set's first image as the library reads them (``prepare_data.py``
    writes them into tifffile's JSON description; ``band_0``… where there are none)."""
    from napari_hitl.core.io.rasters import read_raster

    first = sorted((CACHE / set_name / "images").glob("*.tif"))
    return read_raster(str(first[0])).band_names if first else []


def with_spectral_indices(samples: list, set_name: str) -> list:
    """The ``ndi-`` probe (``effort.py``'s ``:ndi``): images whose band names allow it gain
    normalized-difference spectral indices (:data:`SPECTRAL_INDICES`), computed on the raw
    band values, as bands; other sets are left alone."""
    names = _band_names(set_name)
    pairs = next(
        (
            [(names.index(a), names.index(b)) for a, b in table.values()]
            for table in SPECTRAL_INDICES.values()
            if all(b in names for pair in table.values() for b in pair)
        ),
        [],
    )
    if not pairs:
        return samples

    def indices(s: Any) -> np.ndarray:
        bands = s.bands.astype(np.float32)
        return np.stack([(bands[a] - bands[b]) / np.maximum(bands[a] + bands[b], 1e-6)
                         for a, b in pairs])  # fmt: skip

    return _with_extra_bands(samples, indices)


def _install_full_labels(cfg: Any) -> None:
    """The ``full-`` probe, a ceiling: every pool image starts with its whole ground truth as
    human labels (the simulated person painted every pixel), so the first iteration's test
    mIoU is what the model's training makes of all the pool's labels (run it with one
    iteration)."""
    from napari_hitl.core.evaluation import simulate as simulate_module

    simulate_module.sparse_scribbles = lambda gt, fraction, seed=0: np.asarray(gt, np.uint8)
    cfg.seed_images = 10**6


def _install_final_refit(steps: int, cfg: Any) -> None:
    """The ``last<N>-`` probe: the loop's last Train starts a fresh network and trains it
    ``N`` steps on every label the loop holds by then (what ``napari-hitl train --fresh
    --steps N`` does on a project), instead of a warm start."""
    from dataclasses import replace

    from napari_hitl.core.learning.net import NetClassifier

    plain, calls = NetClassifier.fit, [0]

    def fit(self, images, config, cancel=None):
        calls[0] += 1
        if calls[0] == cfg.iterations:
            self.trained = False
            config = replace(config, steps=steps)
        return (yield from plain(self, images, config, cancel))

    NetClassifier.fit = fit


def _set_train(field: str, value: Any) -> Callable[[re.Match, list, Any], None]:
    """A probe entry that sets ``TrainConfig.<field>`` (a library switch that began here)."""
    return lambda m, samples, cfg: setattr(cfg.train, field, value(m) if callable(value) else value)


# The probe prefixes of a variant name, ``<probe>-<probe>-...<options>`` in any order: each
# probe's pattern (its argument in a group) and what it does with the match, the samples and
# the ``SimulationConfig``; an entry may return new samples (``None``: the same). ``ssl-`` is
# run by :func:`run`, inside its timing.
PROBES: list[tuple[str, Callable[[re.Match, list, Any], list | None]]] = [
    ("imnorm", lambda m, s, c: _per_image_normalized(s)),
    ("ypos", lambda m, s, c: _with_row_position(s)),
    ("lab", lambda m, s, c: _with_lab(s)),
    (r"pcs(\d+)", lambda m, s, c: _principal_components(s, int(m[1]))),
    ("ndi", lambda m, s, c: None),  # needs the set's name: applied in setup()
    ("imean", lambda m, s, c: _with_image_means(s)),
    ("ssl", lambda m, s, c: None),
    ("soup", lambda m, s, c: _install_weight_average()),
    ("snap", lambda m, s, c: _install_snapshot_ensemble()),
    ("rev", lambda m, s, c: _install_machine_label_revision()),
    ("stab", lambda m, s, c: _install_stable_push()),
    ("imhold", lambda m, s, c: _install_image_holdout()),
    (r"ema([0-9.]+)", lambda m, s, c: _install_weight_ema(float(m[1]))),
    (r"wlr([0-9.]+)", lambda m, s, c: _install_warm_lr(float(m[1]))),
    (r"wd([0-9.]+)", lambda m, s, c: _install_weight_decay(float(m[1]))),
    (r"drop([0-9.]+)", lambda m, s, c: _install_dropout(float(m[1]))),
    (r"wide([0-9.]+)", lambda m, s, c: _install_wide(float(m[1]))),
    ("imbal", lambda m, s, c: _install_image_balance()),
    ("hpx", lambda m, s, c: _install_image_balance(human_by_pixel=True)),
    (r"pow([0-9.]+)", lambda m, s, c: _install_image_balance(float(m[1]))),
    ("clip", lambda m, s, c: _install_image_balance(clip=True)),
    (r"cpow([0-9.]+)", lambda m, s, c: _install_class_power(float(m[1]))),
    (r"ctx4(?:m(\d+))?", lambda m, s, c: _install_fourth_scale(int(m[1]) if m[1] else None)),
    (r"prior([0-9.]+)", lambda m, s, c: _install_prior_scale(float(m[1]))),
    ("bscale", lambda m, s, c: _install_bank_scaling()),
    ("autobank", lambda m, s, c: _install_bank_candidate()),
    ("sjit", lambda m, s, c: _install_shared_jitter()),
    ("djit", lambda m, s, c: _install_data_jitter()),
    ("gjit", lambda m, s, c: _install_gain_jitter()),
    (r"bdrop([0-9.]+)", lambda m, s, c: _install_bank_dropout(float(m[1]))),
    (r"bneck(\d+)", lambda m, s, c: _install_bank_bottleneck(int(m[1]))),
    ("hjit", lambda m, s, c: _install_human_jitter()),
    (r"mero(\d+)", lambda m, s, c: _install_machine_erosion(int(m[1]))),
    (r"hs([0-9.]+)", lambda m, s, c: _install_human_share(float(m[1]))),
    ("upright", lambda m, s, c: _install_upright()),
    ("adabn", lambda m, s, c: _install_adabn(c)),
    (r"zoom([0-9.]+)", lambda m, s, c: _install_zoom(float(m[1]))),
    ("agree", lambda m, s, c: _install_agreement()),
    (r"gce([0-9.]+)", lambda m, s, c: _install_robust_machine_loss(float(m[1]))),
    (r"mix([0-9.]+)", lambda m, s, c: _install_mixup(float(m[1]))),
    (r"focal([0-9.]+)", lambda m, s, c: _install_focal(float(m[1]))),
    (r"lov([0-9.]+)", _set_train("lovasz_weight", lambda m: float(m[1]))),
    (r"lovh([0-9.]+)", lambda m, s, c: _install_human_lovasz(c, float(m[1]))),
    (r"lovf([0-9.]+)", lambda m, s, c: _install_fresh_lovasz(float(m[1]))),
    (r"deep(\d+)", lambda m, s, c: _install_deep_ensemble(int(m[1]))),
    (r"fm([0-9.]+)", lambda m, s, c: _install_consistency(float(m[1]))),
    ("cropdec", lambda m, s, c: _install_cropped_decoder()),
    (r"crf([0-9.]+)", lambda m, s, c: _install_prediction_filter("crf", float(m[1]))),
    ("(mnorm|mcap)", lambda m, s, c: _install_machine_class_norm(cap=m[1] == "mcap")),
    ("emprior", lambda m, s, c: _install_prediction_filter("em")),
    (r"oodc([0-9.]+)", _set_train("novelty_gate", lambda m: float(m[1]))),
    ("nojit", _set_train("band_jitter", False)),
    ("nohold", _set_train("holdout_fraction", 0.0)),  # every stroke trains; no temperature fit
    (r"st(\d+)_(\d+)", lambda m, s, c: _set_steps(c, int(m[1]), int(m[2]))),
    (r"pcst(\d+)_(\d+)", lambda m, s, c: _set_patch_cnn_steps(int(m[1]), int(m[2]))),
    (r"pcw(\d+)b(\d+)", lambda m, s, c: _set_patch_window(c, int(m[1]), int(m[2]))),
    ("full", lambda m, s, c: _install_full_labels(c)),
    (r"last(\d+)", lambda m, s, c: _install_final_refit(int(m[1]), c)),
    ("orc", lambda m, s, c: setattr(c, "interaction", "oracle")),
    (r"sf([0-9.]+)", lambda m, s, c: setattr(c, "scribble_fraction", float(m[1]))),
    ("typ", lambda m, s, c: setattr(c, "seed_choice", "typical")),
    (r"ac(\d*)", lambda m, s, c: _install_auto_context(int(m[1] or 3))),
    (r"ac(\d*)d([0-9.]+)", lambda m, s, c: _install_auto_context(int(m[1] or 3), float(m[2]))),
    (r"ft([0-9.]+)w([0-9.]+)", lambda m, s, c: _install_forest_teacher(float(m[1]), float(m[2]))),
]


def _install_forest_teacher(sure: float, weight: float) -> None:
    """``ft<T>w<W>-``: the forest of all strokes labels the training images' unlabeled pixels
    it is at least T sure of, at weight W (``probe_auto_context.py``)."""
    from probe_auto_context import install_teacher

    install_teacher(sure, weight)


def _install_auto_context(folds: int, dropout: float = 0.0) -> None:
    """``ac<F>-``: the U-Net reads the stroke-trained forest's class probabilities as more
    bands, out of fold on the stroked images (F folds, default 3; ``probe_auto_context.py``);
    ``ac<F>d<P>-``: a training crop's forest channels are uniform with probability P."""
    from probe_auto_context import install

    install(folds, dropout)


def _set_steps(cfg: Any, steps: int, warm_steps: int) -> None:
    """``st<F>_<W>-``: a fresh network trains F steps and a warm one W, for any network (the
    ``p<E>b<N>s<F>w<W>`` options are the U-Net's)."""
    cfg.train.steps, cfg.train.warm_steps = steps, warm_steps


def _set_patch_cnn_steps(steps: int, warm_steps: int) -> None:
    """``pcst<F>_<W>-``: the patch CNN's own step counts (``MODEL_DEFAULTS``), so that it also
    trains F / W steps as a member of an ensemble (``st<F>_<W>-`` sets every member's)."""
    from napari_hitl.core.learning.config import MODEL_DEFAULTS

    MODEL_DEFAULTS["patch-cnn"].update(steps=steps, warm_steps=warm_steps)


def _set_patch_window(cfg: Any, window: int, batch: int) -> None:
    """``pcw<E>b<N>-``: the patch CNN trains densely on N crops a step, each classifying an
    E × E window (the 25×25 patch of every window pixel around it) with its dense form, instead
    of 128 single patches (a probe; not adopted, docs/learning-log.md)."""
    from napari_hitl.core.learning import batches
    from napari_hitl.core.tiling import pad_for_tiles

    cfg.train.extra.update(patch_batch=batch)
    cls = batches.PatchBatches
    init, logits_and_targets = cls.__init__, cls.logits_and_targets

    def dense_init(self, images, *args, **kwargs):
        init(self, images, *args, **kwargs)
        if self.is_patch:  # crops of the window plus the patch's halo, targets over the window
            self.out_size, self.r = window, window // 2 + self.halo
            self.padded = [
                (
                    pad_for_tiles(im.x, self.r),
                    np.pad(im.target, self.r, constant_values=-1),
                    np.pad(im.weight, self.r),
                )
                for im in images
            ]

    def dense_logits(self, net, x, t, w):
        if self.is_patch:
            return net(x), t, w  # the dense form: logits of every window pixel
        return logits_and_targets(self, net, x, t, w)

    cls.__init__, cls.logits_and_targets = dense_init, dense_logits


def model_name(options: str) -> str:
    """The model a variant's options (what follows its probes) run: an ensemble as written
    (``unet+patch-cnn``), ``rf``, ``patch-cnn`` or ``auto`` when the options begin with that
    name (``rfmg0``, ``patch-cnnlr0.03``, ``patch-cnnth0.6``), else the default ``unet``."""
    base = options.removesuffix(":fit").removesuffix("-brier").removesuffix("-nll")
    if "+" in base:
        return base
    return next((m for m in ("patch-cnn", "auto", "rf") if base.startswith(m)), "unet")


def split_probes(variant: str) -> tuple[list[tuple[Callable, re.Match]], str]:
    """The leading probe prefixes of ``variant`` (entries of :data:`PROBES` with their
    matches, in order) and what is left: the model and its options."""
    found, rest = [], variant
    while True:
        for pattern, apply in PROBES:
            m = re.match(f"(?:{pattern})-", rest)
            if m:
                found.append((apply, m))
                rest = rest[m.end() :]
                break
        else:
            return found, rest


def setup(set_name: str, variant: str, seed: int, iterations: int = 10) -> tuple[list, Any]:
    """The samples and ``SimulationConfig`` of one run of ``variant``, with its probes installed
    (all but ``ssl-``'s pretraining, which :func:`run` adds inside its timing)."""
    from napari_hitl.core.evaluation.simulate import SimulationConfig, load_image_folder

    opts = SET_OPTIONS[set_name]
    mi = int(opts["--max-images"]) if "--max-images" in opts else None
    samples = load_image_folder(CACHE / set_name / "images", CACHE / set_name / "masks", mi)
    if variant == "bank" or variant.startswith("bank:"):
        samples = _bank_features(samples, variant.removeprefix("bank"))
    probes, variant_opts = split_probes(variant)
    unknown = re.match(r"[a-z]+[0-9.]*-(?!brier$|nll$)", variant_opts.replace("patch-cnn", "cnn"))
    if unknown:  # a prefix no probe knows would otherwise run as the default, unnoticed
        raise SystemExit(f"unknown probe prefix {unknown.group(0)!r} in {variant!r}")
    if variant.endswith(":fit"):  # an ensemble whose weights are fitted on held-out strokes
        from napari_hitl.core.learning import ensemble

        ensemble.DEFAULT_WEIGHTING = "fit"
    cfg = SimulationConfig(
        model=model_name(variant_opts),
        iterations=iterations,
        seed=seed,
        seed_images=int(opts["--seed-images"]),
        scribble_fraction=float(opts["--scribble-fraction"]),
        max_images=mi,
    )
    for key, field in (
        ("potts", "potts_weight"),
        ("lovasz", "lovasz_weight"),
        ("prop", "propagate_weight"),
        ("shrink", "warm_shrink"),
        ("mw", "machine_weight"),
        ("lr", "lr"),
    ):
        m = re.search(key + r"([0-9.]+)", variant_opts)
        if m:
            setattr(cfg.train, field, float(m.group(1)))
    m = re.search(r"ip([0-9.]+)", variant_opts)
    if m:  # TrainConfig.image_power (default 0: every image alike; 1: the draw before)
        cfg.train.image_power = float(m.group(1))
    m = re.search(r"mg(\d+)", variant_opts)
    if m:  # the accepting margin in pixels (default 1)
        cfg.margin = int(m.group(1))
    m = re.search(r"fb([0-9._]+)", variant_opts)
    if m:  # the U-Net's filter-bank front end at these scales (TrainConfig.filter_bank)
        cfg.train.filter_bank = [float(v) for v in m.group(1).strip("_").split("_")]
    m = re.search(r"tb([0-9.]+)", variant_opts)
    if m:  # a training budget in seconds instead of the step counts (TrainConfig.time_budget)
        cfg.train.time_budget = float(m.group(1))
    m = re.search(r"th(0\.[0-9]+)", variant_opts)
    if m:  # the acceptance threshold (default 0.95)
        cfg.threshold = float(m.group(1))
    m = re.match(r"p(\d+)b(\d+)s(\d+)w(\d+)", variant_opts)
    if m:  # U-Net crop edge, crops per batch, fresh and warm steps
        cfg.train.patch, cfg.train.batch_size, cfg.train.steps, cfg.train.warm_steps = map(
            int, m.groups()
        )
    if "long" in variant_opts:
        cfg.train.steps, cfg.train.warm_steps = 160, 80
    if "pbn" in variant_opts:
        cfg.train.precise_bn = True
    if "tta" in variant_opts:
        cfg.train.tta = True
    if "noaug" in variant_opts:  # no flips, rotations or per-band gain/offset jitter of crops
        cfg.train.augment = False
    if re.search(r"\drow", variant_opts):  # e.g. p16b16s320w160row-brier: TrainConfig.row_position
        cfg.train.row_position = True
    for objective in ("brier", "nll"):
        if variant_opts.endswith("-" + objective):
            cfg.train.calibration = objective
    for apply, m in probes:
        samples = apply(m, samples, cfg) or samples
    if any(m[0] == "ndi-" for _, m in probes):
        samples = with_spectral_indices(samples, set_name)
    return samples, cfg


def run(set_name: str, variant: str, seed: int, threads: int, iterations: int = 10) -> dict:
    """One simulate run of ``variant``; appends its line to the results."""
    import torch

    from napari_hitl.core.evaluation.simulate import simulate
    from napari_hitl.core.progress import run_to_end

    torch.set_num_threads(threads)
    samples, cfg = setup(set_name, variant, seed, iterations)
    t0 = time.perf_counter()
    if any(m[0] == "ssl-" for _, m in split_probes(variant)[0]):  # fresh U-Nets pretrained
        from napari_hitl.core.learning import net as net_module
        from napari_hitl.core.learning import weights as weights_module

        build = _ssl_pretrained_build(samples, seed, cfg.test_fraction)
        net_module.build_model = build
        weights_module.build_model = build
    report = run_to_end(simulate(samples, cfg))
    its, summary = report["iterations"], report["summary"]
    out = {
        "set": set_name,
        "variant": variant,
        "seed": seed,
        "iterations": iterations,
        "miou": [round(r["test_miou"], 4) for r in its],
        "labeled": round(its[-1]["labeled_fraction"], 3),
        "label_acc": round(its[-1]["label_accuracy"], 3),
        "labeled_curve": [round(r["labeled_fraction"], 4) for r in its],
        "model_choice": report["config"].get("model_choice"),
        "accepted": summary["accepted_pixels"],
        # pixel-weighted share of accepted pixels that are right, over all iterations
        "accepted_accuracy": round(summary["accepted_accuracy"], 4),
        "train_seconds": [r["train_seconds"] for r in its],
        "train_steps": [r["train_steps"] for r in its],
        "temperature": [round(r["temperature"], 3) for r in its],
        "wall": round(time.perf_counter() - t0, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as fh:
        fh.write(json.dumps(out) + "\n")
    return out


def summarize() -> str:
    """Markdown table: per set and variant, seeds, final and mean-over-iterations mIoU."""
    runs: dict[tuple[str, str], dict[int, dict]] = {}
    for line in RESULTS.read_text().splitlines():  # a rerun of a seed replaces it
        r = json.loads(line)
        runs.setdefault((r["set"], r["variant"]), {})[r["seed"]] = r
    rows = {key: list(by_seed.values()) for key, by_seed in runs.items()}
    out = [
        "| set | variant | seeds | final mIoU | mean mIoU over it. | labeled (final) | "
        "label acc (final) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for (s, v), rs in sorted(rows.items()):
        out.append(
            f"| {s} | {v} | {len(rs)} | {np.mean([r['miou'][-1] for r in rs]):.3f} | "
            f"{np.mean([np.mean(r['miou']) for r in rs]):.3f} | "
            f"{np.mean([r['labeled'] for r in rs]):.2f} | "
            f"{np.mean([r['label_acc'] for r in rs]):.3f} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    if sys.argv[1:] == ["--summarize"]:
        print(summarize())
    else:
        args = sys.argv[1:]
        res = run(args[0], args[1], int(args[2]) if len(args) > 2 else 0,
                  int(args[3]) if len(args) > 3 else 2,
                  int(args[4]) if len(args) > 4 else 10)  # fmt: skip
        print(json.dumps(res), flush=True)
