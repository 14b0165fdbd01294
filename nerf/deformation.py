"""Torso deformation W(x, P_t): a pose-conditioned offset that moves torso points into the canonical space.

dx = gate(x) * MLP(enc(x), pose6); the gate in [0, 1] is the (detached) torso-ness of the undeformed point:
- semantic: the field's softmax probability of the neck + torso classes at x (computed by the caller);
- geometric (when the semantic head is off): a smooth step on the head-frame height below the jaw. The head
  frame has y pointing down (docs/INTERFACES.md: X_cam = R X_head + t, OpenCV axes), so the gate is 0 for
  y <= jaw_y and rises to 1 at y >= jaw_y + width.
Head points (gate 0) get exactly zero offset. The last layer starts at zero, so training starts undeformed.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from nerf.encodings import FrequencyEncoding


def height_gate(x: Tensor, jaw_y: float, width: float) -> Tensor:
    """Smooth step 0 -> 1 over y in [jaw_y, jaw_y + width] (head frame, y down): x [N, 3] -> [N]."""
    s = ((x[:, 1] - jaw_y) / max(width, 1e-8)).clamp(0.0, 1.0)
    return s * s * (3 - 2 * s)


class TorsoDeformation(nn.Module):
    """(x [N,3], pose [N,6], gate [N]) -> (dx [N,3], mean ||dx||^2)."""

    def __init__(self, aabb: Tensor, n_freqs: int = 4, width: int = 64, depth: int = 3, pose_dim: int = 6):
        super().__init__()
        aabb = torch.as_tensor(aabb, dtype=torch.float32).reshape(6)
        self.register_buffer("centre", (aabb[:3] + aabb[3:]) / 2, persistent=False)
        self.register_buffer("half_size", ((aabb[3:] - aabb[:3]) / 2).clamp_min(1e-6), persistent=False)
        self.enc = FrequencyEncoding(n_freqs)
        layers, ch = [], self.enc.out_dim + pose_dim
        for _ in range(depth - 1):
            layers += [nn.Linear(ch, width), nn.ReLU(True)]
            ch = width
        self.out = nn.Linear(ch, 3)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.net = nn.Sequential(*layers, self.out)

    def forward(self, x: Tensor, pose: Tensor, gate: Tensor) -> tuple[Tensor, Tensor]:
        xn = (x - self.centre) / self.half_size  # the box -> [-1, 1]^3
        dx = self.net(torch.cat([self.enc(xn), pose], -1)) * gate.detach()[:, None]
        reg = (dx ** 2).sum(-1).mean() if dx.shape[0] else dx.sum()
        return dx, reg
