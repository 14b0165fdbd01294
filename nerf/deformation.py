"""Torso deformation W(x, P_t): a pose-conditioned offset that moves torso points into the canonical space.

dx = gate(x) * (anchor(x, pose) + MLP(enc(x), pose6)).

The anchor (anchor="camera", the default) is the offset a torso that stays still in front of the camera while
the head turns would need: rays live in the head's canonical frame, where such a torso swings by the inverse of
the head motion (several centimetres at the shoulders for a 15 degree turn). The anchor maps a point x to where
it is relative to the camera, as seen at the mean head pose: x' = R_t (x - c_t) - t_ref (R_t, c_t the frame's head
rotation and camera centre, t_ref the mean head translation), so the MLP only learns how far the torso follows
the head, a small residual; the L2 penalty applies to that residual only. anchor="head" leaves only the MLP
(torso points move with the head unless the MLP learns otherwise).

The gate in [0, 1] is the (detached) torso-ness of the undeformed point:
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


def rotvec_to_matrix(v: Tensor) -> Tensor:
    """Axis-angle [N,3] -> rotation matrices [N,3,3] (Rodrigues)."""
    theta = v.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # [N,1]
    k = v / theta
    zero = torch.zeros_like(k[:, 0])
    kx = torch.stack([zero, -k[:, 2], k[:, 1], k[:, 2], zero, -k[:, 0], -k[:, 1], k[:, 0], zero], -1).view(-1, 3, 3)
    s, c = torch.sin(theta)[..., None], torch.cos(theta)[..., None]
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand_as(kx)
    return eye + s * kx + (1 - c) * (kx @ kx)


class TorsoDeformation(nn.Module):
    """(x [N,3], pose [N,6], gate [N]) -> (dx [N,3], mean ||gate * residual||^2)."""

    def __init__(self, aabb: Tensor, n_freqs: int = 4, width: int = 64, depth: int = 3, pose_dim: int = 6,
                 anchor: str = "camera", anchor_t: Tensor | None = None):
        super().__init__()
        if anchor not in ("camera", "head"):
            raise ValueError(f"deform_anchor must be camera or head, got {anchor!r}")
        self.anchor = anchor
        # mean head translation (camera space) over the training frames: the canonical torso is seen from there
        self.register_buffer("anchor_t", torch.zeros(3) if anchor_t is None else torch.as_tensor(
            anchor_t, dtype=torch.float32).reshape(3).clone())
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

    def anchor_offset(self, x: Tensor, pose: Tensor) -> Tensor:
        """Offset [N,3] that keeps points x [N,3] still relative to the camera of pose [N,6] (pose6: axis-angle
        of R_head^T, camera centre c in the head frame): R_head (x - c) - t_ref - x. Zeros for anchor="head"."""
        if self.anchor != "camera":
            return torch.zeros_like(x)
        r_head = rotvec_to_matrix(pose[:, :3]).transpose(1, 2)
        return (r_head @ (x - pose[:, 3:6])[..., None])[..., 0] - self.anchor_t - x

    def forward(self, x: Tensor, pose: Tensor, gate: Tensor) -> tuple[Tensor, Tensor]:
        xn = (x - self.centre) / self.half_size  # the box -> [-1, 1]^3
        g = gate.detach()[:, None]
        residual = self.net(torch.cat([self.enc(xn), pose], -1)) * g
        reg = (residual ** 2).sum(-1).mean() if x.shape[0] else residual.sum()
        return residual + g * self.anchor_offset(x, pose), reg
