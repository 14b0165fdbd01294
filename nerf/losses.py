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


def training_loss(out: dict[str, Tensor], gt: Tensor, label: Tensor | None, lambda_sem: float,
                  lambda_deform: float) -> tuple[Tensor, Tensor, dict[str, float]]:
    """The training objective of one ray batch from render_rays' outputs (rgb [N,3], optional rgb_coarse, sem [N,C],
    sem_coarse, deform_l2), gt [N,3] and parsing labels [N] (None without parsing).

    Returns (loss: scalar to minimise, per_ray [N] detached (photometric + weighted semantic, for the sampler),
    logs {loss_photo, loss_sem, loss_deform, loss})."""
    photo = photometric(out["rgb"].float(), gt)  # [N]
    if "rgb_coarse" in out:
        photo = photo + photometric(out["rgb_coarse"].float(), gt)
    per_ray = photo.detach()
    loss = photo.mean()
    logs = {"loss_photo": photo.detach().mean().item()}
    if "sem" in out and label is not None and lambda_sem > 0:
        sem = semantic_ce(out["sem"].float(), label)
        if "sem_coarse" in out:
            sem = sem + semantic_ce(out["sem_coarse"].float(), label)
        loss = loss + lambda_sem * sem.mean()
        per_ray = per_ray + lambda_sem * sem.detach()
        logs["loss_sem"] = sem.detach().mean().item()
    if "deform_l2" in out and lambda_deform > 0:
        loss = loss + lambda_deform * out["deform_l2"]
        logs["loss_deform"] = out["deform_l2"].detach().item()
    logs["loss"] = loss.detach().item()
    return loss, per_ray, logs
