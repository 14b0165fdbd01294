"""From samples to pixels: query the model at an estimator's samples and composite (docs/DESIGN.md section 8).

Two paths with one contract, `(model, rays, t [N,S], keep [N,S] | None, ..., codes [N,A] or [1,A], pose [N,6] or
[1,6], ...) -> {"rgb", "acc", "weights", "sem", "deform_l2"}` (one row: shared by all rays, as in a rendered frame):

- `composite_reference`: every kept sample gets density, colour and semantics in one query, then
  rendering.render_weights / composite. Simple, and what the fast path is tested against (`render_path =
  reference`).
- `composite_marching` (the default, `render_path = fast`): nerfacc's two passes.
  1. Density only, marching along the rays in segments of `segment` samples: after each segment the rays whose
     transmittance fell below `stop_eps` stop (early ray termination), so the samples behind an opaque face are
     never queried. Points are queried in chunks of at most `max_points` (the CPU's caches: a hash-grid lookup on
     32k points is ~2x faster per point than on 200k).
  2. Colour and semantics only for the samples whose weight exceeds `weight_eps`, from the feature the density
     pass kept (no second hash-grid lookup), read query by query.
  The weights are the reference's (the same quadrature); what differs is bounded: the light behind a ray that
  stopped (< stop_eps), and the samples below weight_eps (each < weight_eps), whose weight is spread over the
  ray's other samples (as if they had the mean colour and class of those). Both are 1e-4 by default; on the
  trained sample the fast image is 93 dB from the reference's (benchmarks/render_speed.py); tests/test_marching.py
  asks > 40 dB on an analytic soft ball. The same path trains: samples skipped there carry ~zero gradient.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nerf import rendering as R
from nerf.model import rows


def _points(rays_o: Tensor, rays_d: Tensor, t: Tensor, flat: Tensor) -> tuple[Tensor, Tensor]:
    """The samples `flat` [K] (indices into [N*S]) -> points [K,3] and their rays [K]."""
    ray = torch.div(flat, t.shape[1], rounding_mode="floor")
    return rays_o[ray] + t.reshape(-1)[flat, None] * rays_d[ray], ray


def composite_reference(model, rays_o: Tensor, rays_d: Tensor, t: Tensor, keep: Tensor | None, far: Tensor,
                        codes: Tensor, pose: Tensor, bg: Tensor | None, coarse: bool = False,
                        lookup=None, semantics: bool = True) -> dict:
    """Query the (coarse) field at depths t [N,S] (only where keep [N,S]; the rest is empty) and composite."""
    n, s = t.shape
    sel = torch.arange(n * s, device=t.device) if keep is None else keep.reshape(-1).nonzero()[:, 0]
    pts, ray = _points(rays_o, rays_d, t, sel)
    dirs = F.normalize(rays_d, dim=-1)
    codes, pose = codes.expand(n, -1), pose.expand(n, -1)  # one row per ray, as the code has always done
    sigma, rgb, logits, reg = model.query(pts, dirs[ray], codes[ray], pose[ray], coarse, lookup)
    if keep is not None:  # scatter back; skipped samples have zero density
        sigma = sigma.new_zeros(n * s).index_copy(0, sel, sigma)
        rgb = rgb.new_zeros(n * s, 3).index_copy(0, sel, rgb)
        if logits is not None:
            logits = logits.new_zeros(n * s, logits.shape[-1]).index_copy(0, sel, logits)
    weights, trans = R.render_weights(sigma.view(n, s), t, far, ray_norm=rays_d.norm(dim=-1))
    out = {"rgb": R.composite(weights, rgb.view(n, s, 3), bg, trans), "acc": weights.sum(-1),
           "weights": weights, "deform_l2": reg}
    if logits is not None and semantics:
        out["sem"] = R.semantic_distribution(weights, logits.view(n, s, -1), trans)
    return out


def march_density(model, rays_o: Tensor, rays_d: Tensor, t: Tensor, keep: Tensor | None, far: Tensor,
                  codes: Tensor, pose: Tensor, coarse: bool, lookup, segment: int, stop_eps: float,
                  max_points: int) -> tuple[Tensor, list[tuple[Tensor, Tensor]], Tensor]:
    """Pass 1: density of the kept samples, segment by segment, rays stopping once transmittance < stop_eps.

    -> sigma [N*S] (0 where not queried), the queries as (sample indices [K_i] into [N*S], their features
    [K_i,G]) per query (kept apart: pass 2 reads the rows it needs from each, no copy of them all), the
    deformation's mean ||dx||^2 over the queried points."""
    n, s = t.shape
    delta = R.interval_lengths(t, far, rays_d.norm(dim=-1)).detach()  # [N,S]
    depth = t.new_zeros(n)  # optical depth so far (detached: only decides where to stop)
    alive = torch.ones(n, dtype=torch.bool, device=t.device)
    cols = torch.arange(s, device=t.device)
    queries, sigma_parts, reg_sum = [], [], t.new_zeros(())
    for j in range(0, s, segment):
        seg = (cols >= j) & (cols < j + segment)  # [S]
        todo = alive[:, None] & seg[None] if keep is None else keep & alive[:, None] & seg[None]
        flat = todo.reshape(-1).nonzero()[:, 0]
        for part in flat.split(max_points) if flat.numel() else ():
            pts, ray = _points(rays_o, rays_d, t, part)
            sigma, feat, reg = model.density(pts, rows(codes, ray), rows(pose, ray), coarse, lookup)
            queries.append((part, feat)), sigma_parts.append(sigma)
            reg_sum = reg_sum + reg * part.numel()
            depth.index_add_(0, ray, sigma.detach() * delta.reshape(-1)[part])
        alive = alive & (torch.exp(-depth) > stop_eps)
        if not bool(alive.any()):
            break
    if not queries:  # nothing kept: every ray sees the background
        return t.new_zeros(n * s), [], reg_sum
    sel = torch.cat([q[0] for q in queries])
    sigma = torch.cat(sigma_parts)
    return sigma.new_zeros(n * s).index_copy(0, sel, sigma), queries, reg_sum / max(sel.numel(), 1)


def composite_marching(model, rays_o: Tensor, rays_d: Tensor, t: Tensor, keep: Tensor | None, far: Tensor,
                       codes: Tensor, pose: Tensor, bg: Tensor | None, coarse: bool = False, lookup=None,
                       semantics: bool = True, segment: int = 16, stop_eps: float = 1e-4, weight_eps: float = 1e-4,
                       max_points: int = 32768) -> dict:
    """composite_reference's result from fewer queries: density with early ray termination, then colour and
    semantics only where the weight exceeds weight_eps."""
    n, s = t.shape
    sigma, queries, reg = march_density(model, rays_o, rays_d, t, keep, far, codes, pose, coarse, lookup,
                                        segment, stop_eps, max_points)
    weights, trans = R.render_weights(sigma.view(n, s), t, far, ray_norm=rays_d.norm(dim=-1))
    out = {"acc": weights.sum(-1), "weights": weights, "deform_l2": reg}
    # pass 2: the samples that matter, query by query (each at most max_points: large temporaries cost page faults)
    dirs = F.normalize(rays_d, dim=-1)
    flat_w = weights.detach().reshape(-1)
    picked, rays, parts = [], [], []
    for idx, feat in queries:
        rows_i = (flat_w[idx] > weight_eps).nonzero()[:, 0]
        if rows_i.numel():
            f = idx[rows_i]
            r = torch.div(f, s, rounding_mode="floor")
            picked.append(f), rays.append(r)
            parts.append(model.colour(feat[rows_i], dirs[r], rows(codes, r), coarse, semantics))
    if parts:
        flat, ray = torch.cat(picked), torch.cat(rays)
        rgb = torch.cat([p[0] for p in parts])
        logits = torch.cat([p[1] for p in parts]) if parts[0][1] is not None else None
    else:  # nothing visible: the background
        flat = ray = torch.zeros(0, dtype=torch.long, device=t.device)
        rgb, logits = t.new_zeros(0, 3), (t.new_zeros(0, model.n_classes) if model.n_classes and semantics else None)
    w = weights.reshape(-1)[flat]
    # the samples below weight_eps are given the mean colour of the others: their weight is spread over them
    acc_sel = out["acc"].new_zeros(n).index_add(0, ray, w)
    ratio = torch.where(acc_sel > 0, out["acc"] / acc_sel.clamp_min(1e-12), torch.zeros_like(acc_sel)).detach()
    w = w * ratio[ray]
    out["rgb"] = R.composite_packed(w, rgb, ray, n, bg, trans)
    if logits is not None and semantics:
        sem = R.semantic_distribution_packed(w, logits, ray, n, trans)
        out["sem"] = sem / sem.sum(-1, keepdim=True).clamp_min(1e-12)  # rays whose every weight was tiny
    return out
