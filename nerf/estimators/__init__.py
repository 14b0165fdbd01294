"""Estimators: where along each ray to evaluate the field (docs/DESIGN.md section 8).

`OccupancyGrid` (hash backbone: empty-space skipping) and `CoarseToFine` (mlp backbone: hierarchical sampling)
share the interface of `base.Estimator`; neither knows the network.
"""
from nerf.estimators.base import Estimator, RaySamples
from nerf.estimators.coarse_to_fine import CoarseToFine
from nerf.estimators.occupancy_grid import OccupancyGrid

__all__ = ["Estimator", "RaySamples", "CoarseToFine", "OccupancyGrid"]
