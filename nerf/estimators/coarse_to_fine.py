"""Coarse-to-fine sampling (NeRF / AD-NeRF's hierarchical sampling, the `mlp` backbone).

`n_samples` stratified depths -> the caller's coarse pass gives their weights (`weights_fn`) -> `n_importance`
more depths drawn from those weights (inverse CDF) -> all of them, sorted, for the fine pass.
"""
from __future__ import annotations

import torch
from torch import Tensor

from nerf import rendering as R
from nerf.estimators.base import Estimator, RaySamples, WarpFn, WeightsFn


class CoarseToFine(Estimator):
    needs_coarse_pass = True

    def __init__(self, n_samples: int = 64, n_importance: int = 128):
        super().__init__()
        self.n_samples, self.n_importance = n_samples, n_importance

    def sampling(self, rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor, perturb: bool,
                 weights_fn: WeightsFn | None = None, warp_fn: WarpFn | None = None) -> RaySamples:
        """t [N, n_samples + n_importance]; weights_fn (required) renders the coarse depths [N, n_samples]."""
        if weights_fn is None:
            raise ValueError("CoarseToFine.sampling needs weights_fn (the coarse pass)")
        t_c = R.stratified_samples(near, far, self.n_samples, perturb)  # [N, Sc]
        weights = weights_fn(t_c)  # [N, Sc]
        t_f = R.sample_pdf(R.bin_edges(t_c, near, far), weights, self.n_importance, perturb)  # [N, Sf]
        return RaySamples(torch.cat([t_c, t_f], -1).sort(-1).values)
