"""Volume rendering as pure functions on tensors (nerfacc's style): no network, no nn.Module.

Ray depths `t` are along the (unnormalised) ray direction; pass `ray_norm = |d|` to `render_weights` when the
directions are not unit length (AD-NeRF's rays have camera-space z = -1), so densities act per unit length.
"""
from __future__ import annotations

import torch
from torch import Tensor


def stratified_samples(near: Tensor, far: Tensor, n: int, perturb: bool) -> Tensor:
    """n depths per ray, one in each of n equal bins of [near, far]: bin centres, or uniform in the bin.

    near, far [N] -> t [N, n] (increasing).
    """
    u = torch.rand(near.shape[0], n, device=near.device) if perturb else torch.full((near.shape[0], n), 0.5,
                                                                                     device=near.device)
    frac = (torch.arange(n, device=near.device) + u) / n  # [N, n] in (0, 1)
    return near[:, None] + (far - near)[:, None] * frac


def sample_pdf(bins: Tensor, weights: Tensor, n: int, perturb: bool) -> Tensor:
    """n depths drawn from the piecewise-constant pdf of `weights` over `bins` (NeRF's inverse-CDF sampling).

    bins [N, M+1] (increasing edges), weights [N, M] -> t [N, n] (sorted). Not differentiable (detached).
    """
    bins, weights = bins.detach(), weights.detach()
    w = weights + 1e-5  # no zero-probability bins (NaNs on empty rays)
    pdf = w / w.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), pdf.cumsum(-1)], -1).clamp_max(1.0)  # [N, M+1]
    if perturb:
        u = torch.rand(bins.shape[0], n, device=bins.device)
    else:
        u = torch.linspace(0.0, 1.0, n + 2, device=bins.device)[1:-1].expand(bins.shape[0], n)
    u = u.contiguous()
    hi = torch.searchsorted(cdf, u, right=True).clamp(1, cdf.shape[-1] - 1)  # [N, n]
    lo = hi - 1
    cdf_lo, cdf_hi = cdf.gather(1, lo), cdf.gather(1, hi)
    bin_lo, bin_hi = bins.gather(1, lo), bins.gather(1, hi)
    denom = (cdf_hi - cdf_lo).clamp_min(1e-8)
    t = bin_lo + (u - cdf_lo) / denom * (bin_hi - bin_lo)
    return t.sort(-1).values


def interval_lengths(t: Tensor, far: Tensor, ray_norm: Tensor | None = None) -> Tensor:
    """delta_i = t_{i+1} - t_i, the last interval ending at far [N] (times |d| [N] when given): [N, S]."""
    delta = torch.cat([t[:, 1:] - t[:, :-1], far[:, None] - t[:, -1:]], -1).clamp_min(0.0)
    return delta if ray_norm is None else delta * ray_norm[:, None]


def render_weights(sigma: Tensor, t: Tensor, far: Tensor, ray_norm: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Quadrature weights w_i = T_i (1 - exp(-sigma_i delta_i)) and the final transmittance.

    sigma [N, S] (>= 0), t [N, S] sorted depths, far [N]: delta_i = t_{i+1} - t_i and the last interval ends at
    far, so the background shows through with weight `trans_final` [N] (sum(w) + trans_final = 1).
    ray_norm [N] (optional): |d|, the length of one unit of t.
    """
    delta = interval_lengths(t, far, ray_norm)  # [N, S]
    tau = sigma * delta  # optical depth of each interval
    acc = torch.cumsum(tau, -1)  # [N, S]
    trans = torch.exp(-torch.cat([torch.zeros_like(acc[:, :1]), acc[:, :-1]], -1))  # T_i: before interval i
    weights = trans * (1.0 - torch.exp(-tau))
    return weights, torch.exp(-acc[:, -1])


def composite(weights: Tensor, values: Tensor, bg: Tensor | None, trans_final: Tensor) -> Tensor:
    """sum_i w_i v_i + trans_final * bg: weights [N, S], values [N, S, C], bg [N, C] or None -> [N, C]."""
    out = (weights[..., None] * values).sum(1)
    if bg is not None:
        out = out + trans_final[:, None] * bg
    return out


def semantic_distribution(weights: Tensor, logits: Tensor, trans_final: Tensor, bg_class: int = 0) -> Tensor:
    """S(r) = sum_i w_i softmax(s_i), with the final transmittance on the background class: [N, C], rows sum 1."""
    n_classes = logits.shape[-1]
    bg = torch.zeros(weights.shape[0], n_classes, device=weights.device, dtype=weights.dtype)
    bg[:, bg_class] = 1.0
    return composite(weights, torch.softmax(logits, -1), bg, trans_final)


def bin_edges(t: Tensor, near: Tensor, far: Tensor) -> Tensor:
    """Edges [N, S+1] of the intervals around sorted samples t [N, S] (midpoints, ends at near and far)."""
    mids = 0.5 * (t[:, 1:] + t[:, :-1])
    return torch.cat([near[:, None], mids, far[:, None]], -1)


def composite_packed(w: Tensor, values: Tensor, ray: Tensor, n_rays: int, bg: Tensor | None,
                     trans_final: Tensor) -> Tensor:
    """composite() over packed samples: weights w [K], values [K, C] of rays `ray` [K] -> [n_rays, C]
    (+ trans_final [n_rays] * bg [n_rays, C]). Samples not listed count as weight 0."""
    contrib = w[:, None] * values  # [K, C] (the wider dtype of the two under autocast)
    out = contrib.new_zeros(n_rays, contrib.shape[-1]).index_add(0, ray, contrib)
    return out if bg is None else out + trans_final[:, None] * bg


def semantic_distribution_packed(w: Tensor, logits: Tensor, ray: Tensor, n_rays: int, trans_final: Tensor,
                                 bg_class: int = 0) -> Tensor:
    """semantic_distribution() over packed samples (w [K], logits [K, C], ray [K]) -> [n_rays, C]."""
    bg = torch.zeros(n_rays, logits.shape[-1], device=logits.device, dtype=logits.dtype)
    bg[:, bg_class] = 1.0
    return composite_packed(w, torch.softmax(logits, -1), ray, n_rays, bg, trans_final)
