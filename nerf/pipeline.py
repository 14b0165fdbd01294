"""The one pipeline from rays to pixels (docs/DESIGN.md section 8): build the model and its estimator from the
config and the dataset's metadata, turn audio features into codes, render rays, an image and a frame.

Training (nerf/trainer.py), render.py (nerf/render_video.py) and evaluate.py (nerf/evaluation.py) all go through
`Pipeline`. One ray batch, top to bottom, without going back up:

    Pipeline.render_rays
      -> estimator.sampling(rays, weights_fn = coarse pass (mlp), warp_fn = torso motion (hash))  -> t [N,S], keep
      -> marching: model.density(points kept, codes, poses) ray segment by segment, rays stopping when opaque
         (deformation, then the field's density)                                              -> sigma, feature
      -> rendering.render_weights                                                              -> weights
      -> model.colour(feature, dirs, codes) where the weight matters                           -> rgb, logits
      -> rendering.composite_packed / semantic_distribution_packed                             -> rgb, sem, acc
    (`render_path = reference`: model.query at every kept sample, then rendering.composite; nerf/marching.py)
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from common.constants import SHOULDER_CLASSES, TORSO_CLASSES, class_ids
from nerf.audio import audio_windows
from nerf.blinks import closed_level
from nerf import cpu_kernels
from nerf.dataset import get_rays
from nerf.deformation import TorsoDeformation
from nerf.encodings import HashGridEncoding
from nerf.estimators import CoarseToFine, Estimator, OccupancyGrid
from nerf.field import HashField
from nerf.marching import composite_marching, composite_reference
from nerf.model import FRAME_CODE_DIM, ModelConfig, SSPNeRF, mean_head_translation, pose6
from nerf.mouth_shape import band_readout_of, frame_code_note, log_energy_norm
from nerf.speed import Speed, by_device

OLD_GRID_KEYS = {"occ_density": "density", "occ_mask": "mask", "occ_ready": "is_ready", "occ_torso": "aux"}


@dataclass
class RenderConfig:
    """The `render` section: the estimators' settings and the image chunk size."""
    n_samples: int = field(default=64, metadata={"key": "coarse_samples", "aliases": ("n_samples",)})  # mlp: coarse samples per ray (AD-NeRF 64)
    n_importance: int = field(default=128, metadata={"key": "importance_samples", "aliases": ("n_importance",)})  # mlp: fine samples per ray drawn from the coarse weights (AD-NeRF 128)
    hash_samples: int = 128  # hash: stratified samples per ray before empty-space skipping
    chunk: int = field(default=0, metadata={"key": "render_chunk", "aliases": ("chunk",)})  # rays per forward pass when rendering images (0: by device, nerf/speed.py: 4096 on the CPU, up to 65536 on CUDA by free memory)
    occ_res: int = 64  # hash: occupancy grid resolution (cells per axis)
    occ_every: int = 16  # hash: update the occupancy grid every this many iterations
    occ_frac: float = 0.5  # hash: share of cells re-evaluated per update (all at the first)
    occ_decay: float = 0.6  # hash: per-update decay of the stored cell density (max with the new value)
    occ_thresh: float = 0.01  # hash: a cell is occupied if a cell-long step through it has this opacity
    render_path: str = field(default="fast", metadata={"choices": ("fast", "reference")})  # fast: density first with early ray termination, colour only where the weight matters | reference: every kept sample fully (nerf/marching.py)
    march_segment: int = 0  # fast: samples per ray marched between early-termination checks (0: by device: 16 on the CPU, 15% faster training than 8; all samples in one segment on CUDA)
    stop_eps: float = 1e-4  # fast: a ray stops once its transmittance is below this
    weight_eps: float = 1e-4  # fast: colour and semantics only for samples of larger weight
    max_points: int = 0  # fast: points per field query (0: by device: 32768 on the CPU, where smaller batches stay in the caches; the whole chunk on CUDA)
    cpu_kernels: str = field(default="auto", metadata={"choices": ("auto", "cpp", "torch"), "aliases": ("hash_kernel",)})  # fast path on the CPU: the hash-grid lookup and (rendering, AVX-512 CPUs) the small MLPs as compiled C++ kernels (nerf/cpu_kernels.py; auto: if they build, else pure torch) | cpp: they must build | torch: never
    cpu_mlp_precision: str = field(default="bfloat16", metadata={"choices": ("bfloat16", "float32")})  # fast path with cpu_kernels, CPUs with AMX-BF16 (Intel Sapphire Rapids and later): the small MLPs' products in bfloat16, sums and outputs in float32 (nerf/csrc/mlp_amx.cpp: 1.2x a frame, the image ~69 dB from the reference's) | float32: the same floats as torch
    compile_field: bool = False  # torch.compile the field's density and colour (CPU: needs a C++ compiler; the first frames wait for it)


@dataclass
class ModelMeta:
    """What the model needs from the dataset: feature size, class names, the volume, the anchor pose."""
    aud_dim: int
    class_names: list[str]
    aabb: Tensor  # [6] min xyz, max xyz
    anchor_t: Tensor | None = None  # [3] mean head translation (restored from a checkpoint when None)
    pose_ref: Tensor | None = None  # [6] mean pose6 of the training frames
    eye_region: Tensor | None = None  # [2,4] eye centres and radii in the head frame (nerf/blinks.eye_region)
    eye_closed: float | None = None  # the training frames' openness at their blinks (nerf/blinks.closed_level)
    mouth_train: tuple[Tensor, Tensor] | None = None  # the training frames' features [F,16,D] and mouth shapes [F,2]
    log_energy: tuple[float, float] | None = None  # the features' log-energy normalisation (mouth_shape.log_energy_norm)
    bands: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # the spectrum's read-out from the features (common.audio_features.band_readout)
    frame_ids: Tensor | None = None  # [F] the training frames' numbers in the clip (frame_code; restored from a checkpoint)

    @classmethod
    def from_dataset(cls, ds) -> "ModelMeta":
        closed = None if ds.eye is None else closed_level(ds.eye.numpy())
        mouth = None if ds.mouth is None else (ds.aud[ds.aud_ids], ds.mouth)
        return cls(ds.aud_dim, list(ds.class_names or []), ds.aabb(), mean_head_translation(ds.c2w),
                   pose6(ds.c2w).mean(0), ds.eye_region, closed, mouth,
                   log_energy_norm(ds.root) if getattr(ds, "root", None) else None,
                   band_readout_of(ds.root) if getattr(ds, "root", None) else None, ds.frame_numbers)

    def gate_classes(self, deform_gate: str) -> list[int]:
        """The classes whose probability the deformation gate `deform_gate` reads (semantic: neck and torso;
        height+torso: the torso)."""
        return class_ids(self.class_names, SHOULDER_CLASSES if deform_gate == "height+torso" else TORSO_CLASSES)


def make_estimator(backbone: str, rc: RenderConfig, aabb: Tensor) -> Estimator:
    """hash: an occupancy grid; mlp: coarse-to-fine sampling."""
    if backbone == "mlp":
        return CoarseToFine(rc.n_samples, rc.n_importance)
    return OccupancyGrid(aabb, rc.occ_res, rc.hash_samples, rc.occ_every, rc.occ_frac, rc.occ_decay,
                         rc.occ_thresh)


def build_pipeline(cfg, meta: ModelMeta) -> "Pipeline":
    """The model (cfg.model) and its estimator (cfg.render) for a dataset's metadata."""
    model = SSPNeRF(cfg.model, meta.aud_dim, len(meta.class_names), meta.aabb, meta.gate_classes(cfg.model.deform_gate),
                    anchor_t=meta.anchor_t, pose_ref=meta.pose_ref, eye_region=meta.eye_region,
                    eye_closed=meta.eye_closed, frame_ids=meta.frame_ids)
    if model.mouth is not None and meta.mouth_train is not None:  # a checkpoint restores it otherwise
        if meta.log_energy is not None:
            model.mouth.set_energy(*meta.log_energy)
        model.mouth.set_bands(meta.bands)
        model.mouth.fit(*meta.mouth_train)
    rc = cfg.render
    samples = rc.n_samples + rc.n_importance if cfg.model.backbone == "mlp" else rc.hash_samples
    pipe = Pipeline(model, make_estimator(cfg.model.backbone, rc, model.aabb), int(rc.chunk), int(cfg.model.smooth),
                    marching_settings(rc), samples_per_ray=samples)
    pipe.use_cpu_kernels(rc.cpu_kernels, rc.cpu_mlp_precision == "bfloat16")
    if cfg.render.compile_field:
        pipe.compile_field()
    return pipe


def build_for_data(cfg, meta: ModelMeta, seed: int) -> tuple["Pipeline", Any, str | None]:
    """build_pipeline, then the data's choice of a per-frame code: where neither `frame_code` nor `audio_code` is set
    and the audio hardly predicts the mouth (mouth_shape.frame_code_note), built again with FRAME_CODE_DIM channels,
    seeded as a run given `--frame_code 8`. Returns (the pipeline, the config it was built from, the line or None)."""
    pipe = build_pipeline(cfg, meta)
    mouth, mc = pipe.model.mouth, cfg.model
    unset = not (mc.audio_code or mc.frame_code or {"audio_code", "frame_code"} & cfg.explicit)
    note = frame_code_note(mouth.fit_info["cv_r"], FRAME_CODE_DIM) if mouth is not None and unset else None
    if note is None:
        return pipe, cfg, None
    cfg = cfg.replace("model", frame_code=FRAME_CODE_DIM)
    torch.manual_seed(seed)  # the mouth's regression draws no random numbers: moved over, not fitted again
    again = build_pipeline(cfg, replace(meta, mouth_train=None))
    again.model.mouth.load_state_dict(mouth.state_dict())
    again.model.mouth.fit_info = mouth.fit_info
    return again, cfg, note


def marching_settings(rc: RenderConfig) -> dict | None:
    """composite_marching's keyword settings of the fast path (segment, max_points 0: by device), None for the
    reference path."""
    if rc.render_path == "reference":
        return None
    return {"segment": rc.march_segment, "stop_eps": rc.stop_eps, "weight_eps": rc.weight_eps,
            "max_points": rc.max_points}


# model keys added after checkpoints were already made: the value that rebuilds a checkpoint without the key
BEFORE_KEY = {"eyes": False, "eye_code": "openness", "eye_region": False, "audio_at_eyes": True,
              "region_attention": False, "region_groups": ModelConfig.region_groups, "view_dirs": "all",
              "mouth": False, "audio_code": True, "mouth_envelope": False, "mouth_calibrate": False,
              "mouth_deemphasis": False, "frame_code": 0, "frame_code_step": ModelConfig.frame_code_step}


# keys that act only when the named keys are on: a checkpoint predating one takes the current value where they are off
INERT_WITHOUT = {"audio_at_eyes": ("eyes", "eye_region"), "eye_code": ("eyes",), "mouth_envelope": ("mouth",),
                 "mouth_calibrate": ("mouth",), "mouth_deemphasis": ("mouth", "mouth_envelope"),
                 "frame_code_step": ("frame_code",)}


def saved_fingerprint(saved: dict, current: dict) -> dict:
    """A checkpoint's fingerprint completed with BEFORE_KEY's values for the keys it predates (INERT_WITHOUT's keys
    take the current value where they have no effect)."""
    out = {**{k: v for k, v in BEFORE_KEY.items() if k not in saved}, **saved}
    for key, needs in INERT_WITHOUT.items():
        if key not in saved and not all(out.get(n) for n in needs):
            out[key] = current.get(key)
    return out


def fingerprint(cfg, meta: ModelMeta) -> dict:
    """The settings that fix the parameter shapes (a checkpoint only loads under the same ones)."""
    import dataclasses

    fp = {f.name: getattr(cfg.model, f.name) for f in dataclasses.fields(cfg.model)}
    fp.update(aud_dim=meta.aud_dim, n_classes=len(meta.class_names))
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in fp.items()}


def upgrade_state_dict(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """A checkpoint's model state from before the estimator split (flat SSPNeRF keys, occ_* grid buffers,
    mlp's field/field_fine) -> the Pipeline's keys. New-style states pass through."""
    if any(k.startswith(("model.", "estimator.")) for k in sd):
        return sd
    mlp = any(k.startswith("field_fine.") for k in sd)
    out: dict[str, Tensor] = {}
    for k, v in sd.items():
        if k in OLD_GRID_KEYS:
            out["estimator." + OLD_GRID_KEYS[k]] = v
        elif k in ("occ_codes", "occ_n_codes"):
            out[k] = v
        elif mlp and k.startswith("field_fine."):
            out["model.field." + k[len("field_fine."):]] = v
        elif mlp and k.startswith("field."):
            out["model.coarse_field." + k[len("field."):]] = v
        else:
            out["model." + k] = v
    if "estimator.density" in out:
        out["estimator.aabb"] = out["model.aabb"]
    return out


class Pipeline(nn.Module):
    """Model + estimator (+ the recent training audio codes the occupancy grid is refreshed with).

    `use_attention`: whether the audio attention net smooths the codes; the trainer sets it, the checkpoint
    stores it ("audio_attention"), and rendering reads it from there.
    """

    def __init__(self, model: SSPNeRF, estimator: Estimator, chunk: int = 0, smooth: int = 4,
                 marching: dict | None = None, n_recent_codes: int = 16, samples_per_ray: int = 128):
        super().__init__()
        self.model, self.estimator = model, estimator
        self.chunk, self.smooth = chunk, smooth  # chunk 0: by device (nerf/speed.py)
        self.marching = marching  # composite_marching's settings; None: composite_reference
        self.samples_per_ray = samples_per_ray
        self._auto_speed: dict[str, Speed] = {}  # by device, resolved on first use there
        for m in model.modules():  # the reference path also keeps the original hash-grid arithmetic
            if isinstance(m, HashGridEncoding):
                m.fast = marching is not None
        self.use_attention = False
        if estimator.caches_field:  # inputs to the next grid update: codes of recent training batches
            self.register_buffer("occ_codes", torch.zeros(n_recent_codes, model.cond_dim))
            self.register_buffer("occ_n_codes", torch.zeros((), dtype=torch.long))

    def use_cpu_kernels(self, choice: str, bf16: bool) -> None:
        """The fast path's hash grids, hash field MLPs and deformation MLP use the compiled CPU kernels
        (nerf/cpu_kernels.py) if `choice` (auto | cpp | torch) asks for them and they build; the reference path
        never does. Each takes them only where they apply (CPU tensors; the MLPs without gradients, on AVX-512;
        with `bf16` (cpu_mlp_precision = bfloat16), their products in bfloat16 where the CPU has AMX-BF16)."""
        users = [m for m in self.model.modules() if isinstance(m, (HashGridEncoding, HashField, TorsoDeformation))]
        on = self.marching is not None and bool(users) and cpu_kernels.wanted(choice)
        for m in users:
            if isinstance(m, HashGridEncoding):
                m.kernel = on
            else:
                m.mlp_kernel = ("bfloat16" if bf16 else "float32") if on else ""

    def compile_field(self) -> None:
        """torch.compile the field(s)' density and colour (dynamic shapes: the point count changes every call);
        the parameters and the state dict stay those of the eager modules."""
        for fld in (self.model.field, self.model.coarse_field):
            if fld is not None:
                fld.density = torch.compile(fld.density, dynamic=True)
                fld.colour = torch.compile(fld.colour, dynamic=True)

    # ---- audio --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def frame_codes(self, feats: Tensor, ids: Tensor | None = None, use_attention: bool | None = None,
                    batch: int = 256, eye: Tensor | None = None, mouth: Tensor | None = None,
                    frames: Tensor | None = None) -> Tensor:
        """Audio features feats [N,16,D] -> conditions [F,cond_dim] of frames ids [F] (rows of feats; default all):
        the audio codes, with the attention smoothing over 2*smooth+1 neighbours when on (default:
        self.use_attention), the per-frame code at the frames' numbers in the clip frames [F] when the model has one
        (None: the first training frame's), the mouth shape predicted from the features when the model takes it
        (mouth [F,2]: these shapes instead), and the eye openness eye [F] when the model takes it (None: open eyes)."""
        att = self.use_attention if use_attention is None else use_attention
        ids = torch.arange(len(feats)) if ids is None else ids
        dev = self.model.aabb.device
        codes, predicted = [], []
        for part in ids.split(batch):
            codes.append(self.model.audio_codes(audio_windows(feats, part, self.smooth if att else 0).to(dev), att))
            if self.model.mouth is not None and mouth is None:
                predicted.append(self.model.mouth(feats[part].to(dev)))
        return self.model.condition(torch.cat(codes), eye, torch.cat(predicted) if predicted else mouth, frames)

    def remember_code(self, code: Tensor) -> None:
        """code [A] of a training batch, for the estimator's next update (a ring buffer)."""
        if hasattr(self, "occ_codes"):
            k = int(self.occ_n_codes) % self.occ_codes.shape[0]
            self.occ_codes[k] = code.detach()
            self.occ_n_codes += 1

    # ---- training ------------------------------------------------------------------------------------------
    def forward(self, aud: Tensor, inv: Tensor, rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor,
                pose: Tensor, bg: Tensor, eye: Tensor | None = None, mouth: Tensor | None = None,
                frames: Tensor | None = None) -> dict:
        """The training forward (what DDP wraps): aud [U,W,16,D] windows of the batch's U distinct frames (eye [U]
        their eye openness, mouth [U,2] their mouth shape: Trainer._train_mouth, frames [U] their numbers in the clip:
        the per-frame code), inv [N] each ray's frame among them -> codes once per frame -> remember one for the
        estimator -> render rays."""
        codes = self.model.condition(self.model.audio_codes(aud, self.use_attention), eye, mouth, frames)  # [U,cond]
        self.remember_code(codes[inv[0]])
        return self.render_rays(rays_o, rays_d, near, far, codes[inv], pose, bg, perturb=True)

    @torch.no_grad()
    def update_estimator(self, step: int) -> bool:
        """The estimator's periodic update with a recent training code (density callback of the model)."""
        if not self.estimator.caches_field:
            return False

        fn = None

        def occ_eval_fn(x: Tensor):  # the code is drawn on the first call, so only on update steps
            nonlocal fn
            if fn is None:
                n = min(int(self.occ_n_codes), self.occ_codes.shape[0])
                fn = self.model.occ_eval_fn(self.occ_codes[torch.randint(n, ()).item()] if n else self.occ_codes[0])
            return fn(x)

        return self.estimator.update_every_n_steps(step, occ_eval_fn)

    # ---- rendering ----------------------------------------------------------------------------------------
    def _torso_lookup(self):
        """The occupancy grid's cached torso-ness, once it exists and the gate is semantic (else None)."""
        est = self.estimator
        if self.model.semantic_gate and isinstance(est, OccupancyGrid) and est.ready:
            return est.aux_lookup
        return None

    def render_rays(self, rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor, codes: Tensor, pose: Tensor,
                    bg: Tensor | None, perturb: bool, semantics: bool = True) -> dict:
        """N rays (rays_o, rays_d [N,3], near, far [N], codes [N,A], pose [N,6] (or [1,A], [1,6]: one frame's, shared
        by all rays), bg [N,3] | None) -> rgb [N,3],
        acc [N], sem [N,C] (semantic head on and `semantics`), deform_l2 (scalar); with a coarse pass rgb_coarse,
        sem_coarse."""
        lookup = self._torso_lookup()
        coarse: dict[str, Tensor] = {}

        def weights_fn(t: Tensor) -> Tensor:  # the coarse pass (coarse-to-fine estimators)
            coarse.update(self._composite(rays_o, rays_d, t, None, far, codes, pose, bg, True, lookup, semantics))
            return coarse["weights"]

        samples = self.estimator.sampling(rays_o, rays_d, near, far, perturb,
                                          weights_fn=weights_fn if self.estimator.needs_coarse_pass else None,
                                          warp_fn=self.model.torso_warp(pose, lookup))
        out = self._composite(rays_o, rays_d, samples.t, samples.keep, far, codes, pose, bg, False, lookup,
                              semantics)
        if coarse:
            out["rgb_coarse"] = coarse["rgb"]
            if "sem" in coarse:
                out["sem_coarse"] = coarse["sem"]
            out["deform_l2"] = 0.5 * (out["deform_l2"] + coarse["deform_l2"])
        out.pop("weights")
        return out

    def _composite(self, rays_o: Tensor, rays_d: Tensor, t: Tensor, keep: Tensor | None, far: Tensor,
                   codes: Tensor, pose: Tensor, bg: Tensor | None, coarse: bool, lookup, semantics: bool) -> dict:
        """Query the (coarse) field at depths t [N,S] (only where keep [N,S]) and composite (nerf/marching.py)."""
        m = self.marching
        if m is None:
            return composite_reference(self.model, rays_o, rays_d, t, keep, far, codes, pose, bg, coarse, lookup,
                                       semantics)
        auto = self.auto_speed(t.device)
        return composite_marching(self.model, rays_o, rays_d, t, keep, far, codes, pose, bg, coarse, lookup,
                                  semantics, segment=m["segment"] or auto.segment, stop_eps=m["stop_eps"],
                                  weight_eps=m["weight_eps"], max_points=m["max_points"] or auto.max_points)

    def auto_speed(self, device: torch.device) -> Speed:
        """The settings left at 0 take these on `device` (nerf/speed.py), fixed at the first call there."""
        key = str(device)
        if key not in self._auto_speed:
            self._auto_speed[key] = by_device(device, self.samples_per_ray, fast=self.marching is not None)
        return self._auto_speed[key]

    @torch.no_grad()
    def render_image(self, rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor, code: Tensor, pose: Tensor,
                     bg: Tensor | None, chunk: int | None = None, semantics: bool = True) -> dict:
        """All rays of an image ([H*W, ...] each) in chunks; one code [A] and pose [6] for the frame."""
        chunk = chunk or self.chunk or self.auto_speed(rays_o.device).chunk
        parts: dict[str, list[Tensor]] = {}
        for i in range(0, rays_o.shape[0], chunk):
            sl = slice(i, i + chunk)
            out = self.render_rays(rays_o[sl], rays_d[sl], near[sl], far[sl], code.view(1, -1),
                                   pose.view(1, -1), None if bg is None else bg[sl], perturb=False,
                                   semantics=semantics)
            for k in ("rgb", "acc", "sem"):
                if k in out:
                    parts.setdefault(k, []).append(out[k])
        return {k: torch.cat(v) for k, v in parts.items()}

    @torch.no_grad()
    def render_frame(self, cam: Any, c2w: Tensor, code: Tensor, semantics: bool = True) -> dict[str, Tensor]:
        """One frame of a camera `cam` (a TalkingDataset: h, w, focal, cx, cy, near, far, bg [H,W,3]) at pose
        c2w [4,4] with audio code [A] -> rgb float [H,W,3] in [0,1] over the background (CPU) and, with the
        semantic head (and `semantics`: False skips them, a little faster), labels long [H,W]."""
        dev = self.model.aabb.device
        was_training = self.training
        self.eval()
        c2w = c2w.to(dev).float()
        rays_o, rays_d = get_rays(cam.h, cam.w, cam.focal, cam.cx, cam.cy, c2w)
        m = rays_o.shape[0]
        out = self.render_image(rays_o, rays_d, torch.full((m,), cam.near, device=dev),
                                torch.full((m,), cam.far, device=dev), code.to(dev), pose6(c2w),
                                cam.bg.reshape(-1, 3).to(dev), semantics=semantics)
        self.train(was_training)
        res = {"rgb": out["rgb"].reshape(cam.h, cam.w, 3).clamp(0, 1).cpu()}
        if "sem" in out:
            res["labels"] = out["sem"].argmax(-1).reshape(cam.h, cam.w).cpu()
        return res

    def occupied_share(self) -> float:
        return self.estimator.occupied_share()

    # ---- checkpoints --------------------------------------------------------------------------------------
    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Also reads the model state of checkpoints written before the estimator split."""
        return super().load_state_dict(upgrade_state_dict(dict(state_dict)), strict=strict, assign=assign)
