"""Torso deformation W(x, P_t): a pose-conditioned offset that moves torso points into the canonical space.

dx = gate(x) * (rigid(anchor(x, pose), pose6) - x + MLP(enc(x), pose6)).

The anchor (anchor="camera", the default) is the offset a torso that stays still in front of the camera while
the head turns would need: rays live in the head's canonical frame, where such a torso swings by the inverse of
the head motion (several centimetres at the shoulders for a 15 degree turn). The anchor maps a point x to where
it is relative to the camera, as seen at the mean head pose: x' = R_t (x - c_t) - t_ref (R_t, c_t the frame's head
rotation and camera centre, t_ref the mean head translation), so the MLP only learns how far the torso follows
the head, a small residual; the L2 penalty applies to that residual only. anchor="head" leaves only the MLP
(torso points move with the head unless the MLP learns otherwise).

The rigid part (rigid=True, ModelConfig's default) moves every anchored torso point by one pose-conditioned
rotation and translation, x'' = R(w(pose6)) x' + tau(pose6), the identity at the mean training pose: shoulders move
as a whole, so all torso rays of a batch pull on the same 6 numbers. A per-point offset alone learns that motion
poorly (its gradient comes through the field's spatial derivatives, noisy for a hash grid) and the torso stays
blurred. The per-point MLP adds what is not rigid.

The gate in [0, 1] is the (detached) torso-ness of the undeformed point (nerf/model.py `torso_gate`, ModelConfig
deform_gate):
- height+torso (the default): the geometric gate below, or, up to two gate widths above the jaw, the field's
  torso probability where it is sure (0 up to 0.5, 1 from 0.8): a collar or shoulders rising beside the chin;
- semantic: the field's softmax probability of the neck + torso classes at x (computed by the caller);
- geometric (`height`): a smooth step on the head-frame height below the jaw. The head frame has y pointing
  down (docs/DESIGN.md section 5: X_cam = R X_head + t, OpenCV axes), so the gate is 0 for y <= jaw_y and rises to 1
  at y >= jaw_y + width. (Measuring y along the camera's vertical instead, so that a roll does not lift the
  shoulders into the head, did worse on the sample: 22.0 vs 23.1 dB after 2000 iterations, with residual
  offsets 20x larger, as if head points near the jaw were being deformed; benchmarks/NOTES.md.)
Head points (gate 0) get exactly zero offset. The last layer starts at zero, so training starts undeformed.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from nerf import cpu_kernels
from nerf.encodings import FrequencyEncoding
from nerf.field import kernel_mlp, linear_of_parts, linears


def height_gate(x: Tensor, jaw_y: float, width: float) -> Tensor:
    """Smooth step 0 -> 1 over y in [jaw_y, jaw_y + width] (head frame, y down): x [N, 3] -> [N]."""
    return height_gate_of_y(x[:, 1], jaw_y, width)


def height_gate_of_y(y: Tensor, jaw_y: float, width: float) -> Tensor:
    """height_gate of the heights y [N] alone."""
    s = ((y - jaw_y) / max(width, 1e-8)).clamp(0.0, 1.0)
    return s * s * (3 - 2 * s)


def rotvec_to_matrix(v: Tensor) -> Tensor:
    """Axis-angle [N,3] -> rotation matrices [N,3,3]: I + a K + b K^2 (Rodrigues with K = [v]x unnormalised,
    a = sin t / t, b = (1 - cos t) / t^2, their Taylor series near t = 0 so the gradient at v = 0 is exact)."""
    zero = torch.zeros_like(v[:, 0])
    kx = torch.stack([zero, -v[:, 2], v[:, 1], v[:, 2], zero, -v[:, 0], -v[:, 1], v[:, 0], zero], -1).view(-1, 3, 3)
    t2 = (v * v).sum(-1)[:, None, None]  # [N,1,1]
    small = t2 < 1e-6
    t = torch.where(small, torch.ones_like(t2), t2).sqrt()
    a = torch.where(small, 1 - t2 / 6, torch.sin(t) / t)
    b = torch.where(small, 0.5 - t2 / 24, (1 - torch.cos(t)) / (t * t))
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand_as(kx)
    return eye + a * kx + b * (kx @ kx)


def rotate(r: Tensor, v: Tensor) -> Tensor:
    """Rotations r [N,3,3] (or [1,3,3], shared) applied to vectors v [N,3] -> [N,3]."""
    return v @ r[0].T if r.shape[0] == 1 else (r @ v[..., None])[..., 0]


def _mlp(ch_in: int, width: int, depth: int, ch_out: int) -> nn.Sequential:
    """ReLU MLP whose last layer starts at zero (so the offset it gives starts at zero)."""
    layers, ch = [], ch_in
    for _ in range(depth - 1):
        layers += [nn.Linear(ch, width), nn.ReLU(True)]
        ch = width
    out = nn.Linear(ch, ch_out)
    nn.init.zeros_(out.weight)
    nn.init.zeros_(out.bias)
    return nn.Sequential(*layers, out)


class TorsoDeformation(nn.Module):
    """(x [N,3], pose [N,6] or [1,6] shared, gate [N]) -> (dx [N,3], mean ||gate * residual||^2)."""

    # The rigid motion is small (a few degrees, a few hundredths of the head size); its MLP's raw output is scaled
    # down so that Adam's first steps (about lr per weight, whatever the gradient) do not swing the whole torso.
    RIGID_SCALE = 0.05

    def __init__(self, aabb: Tensor, n_freqs: int = 4, width: int = 64, depth: int = 3, pose_dim: int = 6,
                 anchor: str = "camera", anchor_t: Tensor | None = None, rigid: bool = False,
                 pose_ref: Tensor | None = None):
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
        self.net = _mlp(self.enc.out_dim + pose_dim, width, depth, 3)  # per-point residual
        self.out = self.net[-1]
        self.rigid = _mlp(pose_dim, width, 2, 6) if rigid else None  # pose -> (axis-angle, translation) / scale
        if rigid:  # mean pose6 of the training frames: the rigid motion is the identity there (torso_motion)
            self.register_buffer("pose_ref", torch.zeros(pose_dim) if pose_ref is None else torch.as_tensor(
                pose_ref, dtype=torch.float32).reshape(pose_dim).clone())
        self._motion_cache: tuple | None = None  # (pose values, frame_motion's result) of the last rendered pose
        self.mlp_kernel = ""  # "float32" | "bfloat16": the MLP through the compiled kernel, no gradients (HashField)

    def frame_motion(self, pose: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """pose [P,6] (pose6: axis-angle of R_head^T, camera centre c in the head frame) -> (R_head [P,3,3] (camera
        anchor) | None, the rigid rotation [P,3,3] | None, its translation [P,3] | None). A rendered frame's one
        pose row is computed once and reused by every query of the frame (without gradients; ~50 calls of tiny ops
        per frame otherwise)."""
        cacheable = pose.shape[0] == 1 and not torch.is_grad_enabled()
        # keyed on the pose (values, device, dtype) and on the versions of the weights (an optimiser step or a load
        # changes them)
        key = (tuple(pose[0].tolist()), pose.device, pose.dtype,
               tuple(t._version for t in (*self.parameters(), *self.buffers()))) if cacheable else None
        if key is not None and self._motion_cache is not None and self._motion_cache[0] == key:
            return self._motion_cache[1]
        r_head = rotvec_to_matrix(pose[:, :3]).transpose(1, 2) if self.anchor == "camera" else None
        rt = self.rigid_params(pose)
        out = (r_head, None, None) if rt is None else (r_head, rotvec_to_matrix(rt[:, :3]), rt[:, 3:])
        if key is not None:
            self._motion_cache = (key, out)
        return out

    @property
    def has_torso_motion(self) -> bool:
        """Whether torso_motion can be non-zero (camera anchor or rigid part)."""
        return self.anchor == "camera" or self.rigid is not None

    def rigid_params(self, pose: Tensor) -> Tensor | None:
        """pose [N,6] -> the rigid motion's (axis-angle, translation) [N,6], or None without the rigid part. Pinned
        to the identity at the reference pose: otherwise a motion shared by all frames is unconstrained (it only
        moves the canonical torso)."""
        if self.rigid is None:
            return None
        rel = pose - self.pose_ref  # [N,6]
        return (self.rigid(rel) - self.rigid(torch.zeros_like(rel[:1]))) * self.RIGID_SCALE

    def torso_motion(self, x: Tensor, pose: Tensor, motion: tuple | None = None) -> Tensor:
        """Offset [N,3] of torso points x [N,3] under pose [N,6] (or [1,6]) without the per-point residual: the
        camera anchor, then the rigid motion (`motion`: frame_motion(pose) when the caller has it, rows per point)."""
        r_head, r_rigid, t_rigid = self.frame_motion(pose) if motion is None else motion
        if all(m is None or m.shape[0] == 1 for m in (pose, r_head, r_rigid, t_rigid)):  # one frame's motion
            a, b = self._affine(pose, r_head, r_rigid, t_rigid)
            return torch.addmm(b, x, a.T)  # one product instead of ~6 passes over [N,3]
        moved = x if r_head is None else rotate(r_head, x - pose[:, 3:6]) - self.anchor_t
        if r_rigid is not None:
            moved = rotate(r_rigid, moved) + t_rigid
        return moved - x

    def _affine(self, pose: Tensor, r_head: Tensor | None, r_rigid: Tensor | None,
                t_rigid: Tensor | None) -> tuple[Tensor, Tensor]:
        """torso_motion for one shared pose row as offset = a x + b: with moved = R_r (R_h (x - c) - t_ref) + t_r,
        a = R_r R_h - I [3,3] and b = t_r - R_r (R_h c + t_ref) [3] (each part the identity / zero when off)."""
        eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
        rot, shift = eye, torch.zeros(3, dtype=pose.dtype, device=pose.device)
        if r_head is not None:
            rot, shift = r_head[0], -(r_head[0] @ pose[0, 3:6]) - self.anchor_t
        if r_rigid is not None:
            rot, shift = r_rigid[0] @ rot, r_rigid[0] @ shift + t_rigid[0]
        return rot - eye, shift

    def forward(self, x: Tensor, pose: Tensor, gate: Tensor) -> tuple[Tensor, Tensor]:
        xn = (x - self.centre) / self.half_size  # the box -> [-1, 1]^3
        g = gate.detach()[:, None]
        # a frame's one pose row is folded into the first layer's bias (linear_of_parts), not repeated per point
        parts = [*self.enc.parts(xn), pose]  # the encoding's blocks: the kernel reads them in place
        if self.mlp_kernel and cpu_kernels.mlp_applies(xn):
            residual = kernel_mlp(linears(self.net), parts, bf16=self.mlp_kernel == "bfloat16") * g
        else:
            residual = self.net[1:](linear_of_parts(self.net[0], parts)) * g
        # the L2 penalty: only a training loss reads it (0 without gradients, a pass less per render query)
        reg = (residual ** 2).sum(-1).mean() if x.shape[0] and torch.is_grad_enabled() else residual.new_zeros(())
        return residual + g * self.torso_motion(x, pose), reg
