"""The estimator interface: which depths along each ray the field is evaluated at (nerfacc's estimators are the
model: `sampling(...)` and `update_every_n_steps(step, occ_eval_fn)`).

An estimator sees rays, depths and callbacks, never the network:
- `sampling(rays_o, rays_d, near, far, perturb, weights_fn=None, warp_fn=None) -> RaySamples`
  `weights_fn(t [N,S]) -> weights [N,S]`: a coarse rendering pass at depths t (coarse-to-fine uses it);
  `warp_fn(pts [N,S,3], todo [N,S] bool) -> (idx [K], moved [K,3])`: the samples among `todo` that a deformation
  may move (indices into the flat N*S samples) and where they move to (the occupancy grid also keeps a sample that
  is occupied where it moves to).
- `update_every_n_steps(step, occ_eval_fn) -> bool`: refresh cached state from `occ_eval_fn(x [M,3])`, which returns
  the density [M] or (density [M], aux [M] | None); returns whether anything changed.
- `occupied_share() -> float`: share of the volume still sampled (1.0 when nothing is skipped).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from torch import Tensor, nn

WeightsFn = Callable[[Tensor], Tensor]
WarpFn = Callable[[Tensor, Tensor], "tuple[Tensor, Tensor]"]
OccEvalFn = Callable[[Tensor], "Tensor | tuple[Tensor, Tensor | None]"]


class RaySamples(NamedTuple):
    """Depths t [N,S] (sorted, along the unnormalised rays_d) and keep [N,S] bool (None: evaluate every sample)."""
    t: Tensor
    keep: Tensor | None = None


class Estimator(nn.Module):
    """Base class: subclasses implement `sampling`; the update and the share default to 'nothing cached'."""
    needs_coarse_pass = False  # sampling calls weights_fn
    caches_field = False  # update_every_n_steps reads the field (the pipeline keeps recent audio codes for it)

    def sampling(self, rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor, perturb: bool,
                 weights_fn: WeightsFn | None = None, warp_fn: WarpFn | None = None) -> RaySamples:
        raise NotImplementedError

    def update_every_n_steps(self, step: int, occ_eval_fn: OccEvalFn) -> bool:
        return False

    def occupied_share(self) -> float:
        return 1.0
