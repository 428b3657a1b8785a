"""The supervised loss of the networks: class-balanced, with human labels anchoring the model.

:func:`class_losses` gives each labeled group's per-class losses — human pixels (weight 1) and
machine-accepted ones (weight < 1) — and :func:`balanced_loss` combines them as the networks
train (``L_human + w_machine · L_machine``); other weightings can be built from the same parts.
:func:`lovasz_softmax` is a surrogate of the mean Jaccard index that may be added to it
(``TrainConfig.lovasz_weight``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class GroupLoss:
    """One labeled group of a batch: its classes' mean losses and what they weigh.

    Attributes
    ----------
    per_class
        Mean cross-entropy of each class present in the group (in class order).
    present
        Which of the ``k`` classes the group holds (a boolean mask, ``per_class``'s classes).
    weight
        The group's pixel weight: 1 for human labels, the machine weight's mean for the others.
    """

    per_class: torch.Tensor
    present: torch.Tensor
    weight: float


def class_losses(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    k: int,
    per_pixel: torch.Tensor | None = None,
) -> tuple[GroupLoss | None, GroupLoss | None, torch.Tensor]:
    """Each labeled group's per-class losses on a batch.

    Parameters
    ----------
    logits
        ``N, k, H, W`` network outputs.
    target
        ``N, H, W`` class indices (-1: no label).
    weight
        ``N, H, W``: 1 for human pixels, smaller for machine-accepted ones, 0 for pixels that do
        not count.
    k
        Number of classes.
    per_pixel
        Each pixel's loss (``N, H, W``); by default the cross-entropy of ``logits``.

    Returns
    -------
    human, machine : GroupLoss or None
        The two groups (``None`` for a group without pixels in the batch).
    zero : torch.Tensor
        A zero that carries the graph: what a batch without labels adds to the loss.
    """
    if per_pixel is None:
        per_pixel = F.cross_entropy(logits, target.clamp(min=0), reduction="none")
    per_px = per_pixel.reshape(-1)
    t = target.clamp(min=0).reshape(-1)
    w = weight.reshape(-1) * (target.reshape(-1) >= 0)
    onehot = F.one_hot(t, k).float()
    human = w >= 1.0
    groups: list[GroupLoss | None] = []
    for mask, share in ((human, 1.0), (~human & (w > 0), None)):
        if not bool(mask.any()):
            groups.append(None)
            continue
        group = onehot * mask.float().reshape(-1, 1)
        counts = group.sum(0)
        present = counts > 0
        per_class = (group * per_px.reshape(-1, 1)).sum(0)[present] / counts[present]
        groups.append(GroupLoss(per_class, present, share or float(w[mask].mean())))
    return groups[0], groups[1], per_px.sum() * 0


def balanced_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    k: int,
    per_pixel: torch.Tensor | None = None,
) -> torch.Tensor:
    """Class-balanced cross-entropy in which human labels always anchor the model.

    Pixels with weight 1 are human, smaller weights mark machine-accepted pixels and give their
    share. Each group's loss is averaged per class, then over its classes (every class counts the
    same, whatever its pixel count); the total is ``L_human + w_machine · L_machine``. Machine
    labels soon outnumber human ones a hundred to one: weighting them per pixel would let the
    model's own past predictions outvote the person, the confirmation bias that makes
    self-training degrade round after round. Arguments as in :func:`class_losses`.
    """
    human, machine, total = class_losses(logits, target, weight, k, per_pixel)
    for group in (human, machine):
        if group is not None:
            total = total + group.weight * group.per_class.mean()
    return total


def lovasz_softmax(
    logits: torch.Tensor, target: torch.Tensor, labeled: torch.Tensor
) -> torch.Tensor:
    """Lovász-softmax loss (Berman, Rannen Triki & Blaschko, CVPR 2018) on the labeled pixels.

    The Lovász extension of each class's Jaccard loss, evaluated at the pixels' errors
    ``|[y = c] - p_c|`` and averaged over the classes the labeled pixels hold: a convex
    surrogate of ``1 - mIoU`` that equals it exactly when the probabilities are 0 or 1. It
    rewards what the test score rewards — every class's intersection over union — instead of
    each pixel's log-likelihood.

    Parameters
    ----------
    logits
        ``N, K, ...`` network outputs (any spatial shape, or none).
    target
        ``N, ...`` class indices.
    labeled
        ``N, ...`` bool: the pixels that count (others are ignored, whatever their target).

    Returns
    -------
    torch.Tensor
        The loss (a scalar that carries the graph; 0 where no pixel is labeled).
    """
    k = logits.shape[1]
    keep = labeled.reshape(-1)
    p = torch.softmax(logits, 1).movedim(1, -1).reshape(-1, k)[keep]
    t = target.reshape(-1)[keep]
    terms = []
    for c in range(k):
        fg = (t == c).to(p.dtype)
        if not bool(fg.any()):
            continue
        errors, order = torch.sort((fg - p[:, c]).abs(), descending=True)
        gts = fg[order]
        total = gts.sum()
        jaccard = 1 - (total - gts.cumsum(0)) / (total + (1 - gts).cumsum(0))
        steps = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])  # the extension's weights
        terms.append(torch.dot(errors, steps))
    return torch.stack(terms).mean() if terms else logits.sum() * 0
