"""SSPNeRF: audio nets + torso deformation + the unified field, rendered along rays (DESIGN.md section 5).

Per ray batch: sample depths -> points x -> (deform on) gate = detached torso-ness at x, x' = x + gate * W(x, pose)
-> field(x', d, audio code) -> density, colour, semantic logits -> volume rendering with the background pixel
behind the final transmittance.

Sampling per backbone:
- `mlp`: AD-NeRF's hierarchical sampling with two networks like NeRF/AD-NeRF: a coarse field on `n_samples`
  stratified depths and a fine field on those plus `n_importance` depths drawn from the coarse weights.
- `hash`: `hash_samples` stratified depths per ray; once the occupancy grid is initialised only samples in
  occupied cells are queried (compacted, evaluated, scattered back; empty samples get zero density).
  The grid (`occ_res`^3 over the aabb, canonical space) holds an EMA-max of the density at jittered cell points,
  evaluated every `occ_every` steps with the audio code of a recent training batch; the mask is dilated by one
  cell so that torso points, which the deformation moves a little, are not dropped.

Deformation gate (semantic head on): the field's detached neck+torso probability at the undeformed point. For
`mlp` the field is evaluated there (no grad, colour branch skipped). For `hash`, once the occupancy grid exists,
the same quantity is read (trilinearly) from a grid refreshed with the occupancy grid, which saves a second
hash-grid lookup per sample (~40% of a training step on the CPU); before that the field is evaluated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field as dc_field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerf import rendering as R
from nerf.audio import AudioAttNet, AudioNet
from nerf.deformation import TorsoDeformation, height_gate
from nerf.field import HashField, MLPField


@dataclass
class ModelConfig:
    backbone: str = dc_field(default="hash", metadata={"choices": ("hash", "mlp")})  # hash (fast) | mlp (AD-NeRF)
    semantic: bool = True  # semantic parsing head (ablation: false)
    deform: bool = True  # torso deformation field (ablation: false)
    aud_code_dim: int = 64  # audio code size (AudioNet output)
    smooth: int = 4  # audio attention over 2*smooth+1 neighbouring frames (AD-NeRF: 8)
    density_act: str = dc_field(default="auto", metadata={"choices": ("auto", "softplus", "trunc_exp", "relu")})  # auto: softplus for mlp, trunc_exp for hash
    mlp_width: int = 256  # mlp backbone: layer width (AD-NeRF 256)
    mlp_depth: int = 8  # mlp backbone: layers (AD-NeRF 8, skip after 4)
    pe_pts: int = 10  # mlp backbone: frequencies of the point encoding (AD-NeRF 10)
    pe_dirs: int = 4  # frequencies of the direction encoding (AD-NeRF 4)
    hash_levels: int = 16  # hash grid levels
    hash_features: int = 2  # features per level
    hash_log2_table: int = 17  # log2 of each level's table size
    hash_base_res: int = 16  # coarsest grid resolution
    hash_max_res: int = 1024  # finest grid resolution
    hash_width: int = 64  # hash backbone: width of the small MLPs
    geo_dim: int = 15  # hash backbone: geometric feature size (feeds colour and semantics)
    deform_freqs: int = 4  # torso deformation: frequencies of its point encoding
    deform_width: int = 64  # torso deformation: MLP width
    deform_anchor: str = dc_field(default="camera", metadata={"choices": ("camera", "head")})  # camera: torso points start still relative to the camera (the MLP learns how far they follow the head) | head: MLP only
    deform_rigid: bool = True  # torso deformation: add a pose-conditioned rigid motion of the torso
    deform_gate: str = dc_field(default="height", metadata={"choices": ("height", "semantic")})  # which points deform: height below the jaw | the field's neck+torso probability (semantic head on)
    gate_jaw_y: float = 0.09  # geometric gate: head-frame y (down) of the jaw
    gate_width: float = 0.03  # geometric gate: rises from 0 at the jaw to 1 this far below it


@dataclass
class RenderConfig:
    n_samples: int = 64  # mlp: coarse samples per ray (AD-NeRF 64)
    n_importance: int = 128  # mlp: fine samples per ray (AD-NeRF 128)
    hash_samples: int = 128  # hash: stratified samples per ray before empty-space skipping
    chunk: int = 4096  # rays per forward pass when rendering images
    occ_res: int = 64  # hash: occupancy grid resolution (cells per axis)
    occ_every: int = 16  # hash: update the occupancy grid every this many iterations
    occ_frac: float = 0.5  # hash: share of cells re-evaluated per update (all at the first)
    occ_decay: float = 0.6  # hash: per-update decay of the stored cell density (max with the new value)
    occ_thresh: float = 0.01  # hash: a cell is occupied if a cell-long step through it has this opacity


def pose6(c2w: Tensor) -> Tensor:
    """c2w [..., 4, 4] -> [..., 6]: axis-angle of the camera rotation (OpenCV axes) + camera position.

    The rotation is c2w's rotation with the OpenGL flip undone (c2w[:3,:3] @ diag(1,-1,-1) = R_head^T), so a
    frontal camera gives ~0 instead of a rotation by pi whose axis-angle would jump between frames.
    """
    from scipy.spatial.transform import Rotation

    rot = c2w[..., :3, :3] * torch.tensor([1.0, -1.0, -1.0], dtype=c2w.dtype, device=c2w.device)
    flat = rot.detach().reshape(-1, 3, 3).cpu().double().numpy()
    rotvec = torch.from_numpy(Rotation.from_matrix(flat).as_rotvec()).to(c2w.dtype).to(c2w.device)
    return torch.cat([rotvec.reshape(*c2w.shape[:-2], 3), c2w[..., :3, 3]], -1)


def mean_head_translation(c2w: Tensor) -> Tensor:
    """c2w [F,4,4] (OpenGL, head frame) -> [3]: the mean head translation t (X_cam = R X_head + t, OpenCV)."""
    r_head_t = c2w[:, :3, :3] * torch.tensor([1.0, -1.0, -1.0], dtype=c2w.dtype)  # R_head^T
    return -(r_head_t.transpose(1, 2) @ c2w[:, :3, 3:4])[..., 0].mean(0)


class SSPNeRF(nn.Module):
    def __init__(self, model_cfg: ModelConfig, render_cfg: RenderConfig, aud_dim: int, n_classes: int,
                 aabb: Tensor, torso_classes: list[int], anchor_t: Tensor | None = None,
                 pose_ref: Tensor | None = None):
        """anchor_t [3]: the mean head translation (camera space) of the training frames (deform_anchor=camera);
        pose_ref [6]: their mean pose6 (deform_rigid). Both are buffers, restored from a checkpoint."""
        super().__init__()
        mc, rc = model_cfg, render_cfg
        if mc.backbone not in ("hash", "mlp"):
            raise ValueError(f"backbone must be hash or mlp, got {mc.backbone!r}")
        self.mc, self.rc = mc, rc
        aabb = torch.as_tensor(aabb, dtype=torch.float32).reshape(6)
        self.register_buffer("aabb", aabb)
        self.n_classes = n_classes if mc.semantic else 0
        self.audio_net = AudioNet(aud_dim, mc.aud_code_dim)
        self.audio_att = AudioAttNet(mc.aud_code_dim, 2 * mc.smooth + 1)
        self.deformation = TorsoDeformation(aabb, mc.deform_freqs, mc.deform_width, anchor=mc.deform_anchor,
                                            anchor_t=anchor_t, rigid=mc.deform_rigid,
                                            pose_ref=pose_ref) if mc.deform else None
        self.torso_classes = [c for c in torso_classes if 0 <= c < self.n_classes]
        act = mc.density_act
        if mc.backbone == "mlp":
            act = "softplus" if act == "auto" else act
            make = lambda: MLPField(mc.aud_code_dim, self.n_classes, mc.mlp_width, mc.mlp_depth, mc.pe_pts,  # noqa
                                    mc.pe_dirs, act)
            self.field, self.field_fine = make(), make()
        else:
            act = "trunc_exp" if act == "auto" else act
            self.field = HashField(aabb, mc.aud_code_dim, self.n_classes, mc.hash_levels, mc.hash_features,
                                   mc.hash_log2_table, mc.hash_base_res, mc.hash_max_res, mc.hash_width,
                                   mc.geo_dim, mc.pe_dirs, act)
            self.field_fine = None
            r = rc.occ_res
            self.register_buffer("occ_density", torch.zeros(r, r, r))  # EMA max of the density per cell
            self.register_buffer("occ_mask", torch.ones(r, r, r, dtype=torch.bool))  # dilated occupied cells
            self.register_buffer("occ_ready", torch.zeros((), dtype=torch.bool))
            self.register_buffer("occ_torso", torch.zeros(r, r, r))  # torso-ness per cell (deformation gate)
            self.register_buffer("occ_codes", torch.zeros(16, mc.aud_code_dim))  # recent training audio codes
            self.register_buffer("occ_n_codes", torch.zeros((), dtype=torch.long))

    # ---- audio --------------------------------------------------------------------------------------------
    def audio_codes(self, aud: Tensor, use_attention: bool) -> Tensor:
        """aud [F, W, 16, D] (W neighbouring windows, centre in the middle) -> codes [F, aud_code_dim]."""
        f, w = aud.shape[:2]
        codes = self.audio_net(aud.reshape(f * w, *aud.shape[2:])).view(f, w, -1)
        return self.audio_att(codes) if use_attention else codes[:, w // 2]

    # ---- sampling and rendering ---------------------------------------------------------------------------
    def _gate(self, fld: nn.Module, x: Tensor, aud: Tensor) -> Tensor:
        """Detached torso-ness of undeformed points x [M,3] -> [M] in [0, 1]."""
        if self.mc.deform_gate == "semantic" and self.n_classes > 0 and self.torso_classes:
            if self.field_fine is None and bool(self.occ_ready):
                return self._torso_lookup(x)
            with torch.no_grad():
                prob = torch.softmax(fld.semantics(x, aud), -1)
                return prob[:, self.torso_classes].sum(-1)
        return height_gate(x, self.mc.gate_jaw_y, self.mc.gate_width)

    def _query(self, fld: nn.Module, x: Tensor, d: Tensor, aud: Tensor, pose: Tensor):
        """Deform (when on) and evaluate the field at points x [M,3]: sigma [M], rgb [M,3], logits, ||dx||^2."""
        reg = x.new_zeros(())
        if self.deformation is not None and x.shape[0] > 0:
            dx, reg = self.deformation(x, pose, self._gate(fld, x, aud))
            x = x + dx
        sigma, rgb, logits = fld(x, d, aud)
        return sigma, rgb, logits, reg

    def _render(self, fld: nn.Module, rays_o: Tensor, rays_d: Tensor, t: Tensor, far: Tensor, aud: Tensor,
                pose: Tensor, bg: Tensor | None, keep: Tensor | None) -> dict:
        """Render depths t [N,S] with field `fld`; keep [N,S] bool: the samples to query (others are empty)."""
        n, s = t.shape
        pts = (rays_o[:, None] + t[..., None] * rays_d[:, None]).reshape(-1, 3)  # [N*S, 3]
        dirs = F.normalize(rays_d, dim=-1)
        if keep is None:
            sel, ray = None, torch.arange(n, device=t.device).repeat_interleave(s)
        else:
            sel = keep.reshape(-1).nonzero()[:, 0]  # compact: only the occupied samples are queried
            ray = torch.div(sel, s, rounding_mode="floor")
            pts = pts[sel]
        sigma, rgb, logits, reg = self._query(fld, pts, dirs[ray], aud[ray], pose[ray])
        if sel is not None:  # scatter back; skipped samples have zero density
            sigma = sigma.new_zeros(n * s).index_copy(0, sel, sigma)
            rgb = rgb.new_zeros(n * s, 3).index_copy(0, sel, rgb)
            if logits is not None:
                logits = logits.new_zeros(n * s, logits.shape[-1]).index_copy(0, sel, logits)
        weights, trans = R.render_weights(sigma.view(n, s), t, far, ray_norm=rays_d.norm(dim=-1))
        depth, acc = R.depth_and_opacity(weights, t)
        out = {"rgb": R.composite(weights, rgb.view(n, s, 3), bg, trans), "depth": depth, "acc": acc,
               "weights": weights, "deform_l2": reg}
        if logits is not None:
            out["sem"] = R.semantic_distribution(weights, logits.view(n, s, -1), trans)
        return out

    def render_rays(self, rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor, aud_code: Tensor,
                    pose: Tensor, bg_rgb: Tensor | None, perturb: bool) -> dict:
        """Render N rays: rgb [N,3], depth [N], acc [N], sem [N,C] (semantic head on), deform_l2 (scalar);
        for `mlp` also rgb_coarse [N,3] and sem_coarse [N,C]."""
        if self.training and torch.is_grad_enabled() and self.field_fine is None:
            self._remember_code(aud_code[0])
        if self.field_fine is not None:  # mlp: coarse + fine
            t_c = R.stratified_samples(near, far, self.rc.n_samples, perturb)
            coarse = self._render(self.field, rays_o, rays_d, t_c, far, aud_code, pose, bg_rgb, None)
            t_f = R.sample_pdf(R.bin_edges(t_c, near, far), coarse["weights"], self.rc.n_importance, perturb)
            t_all = torch.cat([t_c, t_f], -1).sort(-1).values
            out = self._render(self.field_fine, rays_o, rays_d, t_all, far, aud_code, pose, bg_rgb, None)
            out["rgb_coarse"] = coarse["rgb"]
            if "sem" in coarse:
                out["sem_coarse"] = coarse["sem"]
            out["deform_l2"] = 0.5 * (out["deform_l2"] + coarse["deform_l2"])
        else:  # hash: uniform samples, empty ones skipped once the occupancy grid exists
            t = R.stratified_samples(near, far, self.rc.hash_samples, perturb)
            keep = self._keep(rays_o, rays_d, t, aud_code, pose) if bool(self.occ_ready) else None
            out = self._render(self.field, rays_o, rays_d, t, far, aud_code, pose, bg_rgb, keep)
        out.pop("weights")
        return out

    @torch.no_grad()
    def render_image(self, rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor, aud_code: Tensor,
                     pose: Tensor, bg_rgb: Tensor | None, chunk: int = 4096) -> dict:
        """All rays of an image ([H*W, ...] each), chunked; one audio code [A] and pose [6] for the frame."""
        parts: dict[str, list[Tensor]] = {}
        for i in range(0, rays_o.shape[0], chunk):
            sl = slice(i, i + chunk)
            m = rays_o[sl].shape[0]
            out = self.render_rays(rays_o[sl], rays_d[sl], near[sl], far[sl], aud_code.expand(m, -1),
                                   pose.expand(m, -1), None if bg_rgb is None else bg_rgb[sl], perturb=False)
            for k in ("rgb", "depth", "acc", "sem"):
                if k in out:
                    parts.setdefault(k, []).append(out[k])
        return {k: torch.cat(v) for k, v in parts.items()}

    # ---- empty-space skipping (hash) ----------------------------------------------------------------------
    def _cell_index(self, pts: Tensor) -> tuple[Tensor, Tensor]:
        """pts [..., 3] -> flat cell index [...] (clamped) and inside-the-aabb mask [...]."""
        r = self.rc.occ_res
        lo, hi = self.aabb[:3], self.aabb[3:]
        u = (pts - lo) / (hi - lo)
        inside = ((u >= 0) & (u <= 1)).all(-1)
        ijk = (u * r).long().clamp(0, r - 1)
        return (ijk[..., 0] * r + ijk[..., 1]) * r + ijk[..., 2], inside

    def _keep(self, rays_o: Tensor, rays_d: Tensor, t: Tensor, aud: Tensor, pose: Tensor) -> Tensor:
        """bool [N,S]: the samples worth querying: occupied where they are, or (torso points) occupied where the
        camera anchor and the rigid motion move them; the per-point residual is covered by the grid's dilation."""
        pts = rays_o[:, None] + t[..., None] * rays_d[:, None]  # [N,S,3]
        keep = self._occupied(pts)
        if self.deformation is not None and self.deformation.has_torso_motion:
            n, s = t.shape
            flat = pts.reshape(-1, 3)
            rep = lambda a: a[:, None].expand(n, s, a.shape[-1]).reshape(n * s, -1)  # noqa: E731
            with torch.no_grad():
                moved = flat + self.deformation.torso_motion(flat, rep(pose))
                torso = self._gate(self.field, flat, None) > 0.01  # height gate or the torso grid: no audio
            keep |= (torso & self._occupied(moved)).view(n, s)
        return keep

    def _occupied(self, pts: Tensor) -> Tensor:  # [..., 3] -> bool [...]
        idx, inside = self._cell_index(pts)
        return self.occ_mask.reshape(-1)[idx] & inside

    def _torso_lookup(self, x: Tensor) -> Tensor:  # [M, 3] -> [M], trilinear in the torso-ness grid
        lo, hi = self.aabb[:3], self.aabb[3:]
        g = ((x - lo) / (hi - lo) * 2 - 1).flip(-1)  # grid_sample wants (w, h, d) = (z, y, x) in [-1, 1]
        out = F.grid_sample(self.occ_torso[None, None], g.view(1, -1, 1, 1, 3), mode="bilinear",
                            padding_mode="border", align_corners=False)
        return out.view(-1)

    def _remember_code(self, code: Tensor) -> None:
        k = int(self.occ_n_codes) % self.occ_codes.shape[0]
        self.occ_codes[k] = code.detach()
        self.occ_n_codes += 1

    @torch.no_grad()
    def update_occupancy(self, step: int) -> bool:
        """Every `occ_every` steps: re-evaluate the density at jittered points of (a share of) the cells with the
        audio code of a recent batch, EMA-max it into the grid and rebuild the occupied mask. No-op for mlp.
        Returns whether the grid changed."""
        if self.field_fine is not None or step <= 0 or step % self.rc.occ_every != 0:
            return False
        r, dev = self.rc.occ_res, self.aabb.device
        n_cells = r ** 3
        if bool(self.occ_ready):
            cells = torch.randperm(n_cells, device=dev)[: max(1, int(self.rc.occ_frac * n_cells))]
        else:
            cells = torch.arange(n_cells, device=dev)
        n_codes = min(int(self.occ_n_codes), self.occ_codes.shape[0])
        code = self.occ_codes[torch.randint(n_codes, ()).item()] if n_codes else self.occ_codes[0]
        ijk = torch.stack([cells // (r * r), (cells // r) % r, cells % r], -1).float()
        lo, hi = self.aabb[:3], self.aabb[3:]
        pts = lo + (ijk + torch.rand_like(ijk)) / r * (hi - lo)
        sigma, torso = [], []
        for p in pts.split(65536):
            s, logits = self.field.density_and_semantics(p, code.expand(p.shape[0], -1))
            sigma.append(s)
            if logits is not None and self.torso_classes:
                torso.append(torch.softmax(logits, -1)[:, self.torso_classes].sum(-1))
        sigma = torch.cat(sigma)
        if torso:
            self.occ_torso.view(-1)[cells] = torch.cat(torso).float()
        grid = self.occ_density.view(-1)
        grid.mul_(self.rc.occ_decay)
        grid[cells] = torch.maximum(grid[cells], sigma.float())
        cell_len = float(((hi - lo) / r).mean())
        thresh = min(-math.log(1 - self.rc.occ_thresh) / cell_len, float(grid.mean()))
        occ = (self.occ_density > thresh).float()[None, None]
        self.occ_mask.copy_(F.max_pool3d(occ, 3, stride=1, padding=1)[0, 0] > 0)
        self.occ_ready.fill_(True)
        return True

    def occupancy_share(self) -> float:
        """Share of occupied cells (1.0 before the grid exists or for mlp)."""
        if self.field_fine is not None or not bool(self.occ_ready):
            return 1.0
        return float(self.occ_mask.float().mean())

