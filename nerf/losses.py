"""Per-ray loss terms as pure functions (the trainer weights and averages them)."""
from __future__ import annotations

import torch
from torch import Tensor


def photometric(pred: Tensor, gt: Tensor) -> Tensor:
    """Squared colour error per ray: pred, gt [N, 3] -> [N] (mean over channels)."""
    return ((pred - gt) ** 2).mean(-1)


def semantic_ce(prob: Tensor, label: Tensor, eps: float = 1e-6) -> Tensor:
    """Cross-entropy of the rendered class distribution S(r) [N, C] (rows sum to 1, background mass included)
    against the parsing label [N] (long): -log(S[label] + eps) -> [N]."""
    return -torch.log(prob.gather(1, label.long()[:, None])[:, 0].clamp_min(0.0) + eps)


def opacity_entropy(acc: Tensor, eps: float = 1e-6) -> Tensor:
    """Binary entropy of the ray opacity [N] -> [N] (optional: pushes rays to fully empty or fully opaque)."""
    a = acc.clamp(eps, 1 - eps)
    return -(a * torch.log(a) + (1 - a) * torch.log(1 - a))
