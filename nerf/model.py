"""SSPNeRF: the field(s), the audio networks and the torso deformation, with the callbacks the pipeline renders
through (docs/DESIGN.md section 6). No sampling and no cached grids here: those are the estimator's.

Callbacks:
- `audio_codes(aud [F,W,16,D], use_attention) -> [F,A]`: once per frame, never per ray.
- `density(x [M,3], aud [M,A], pose [M,6], coarse, torso_lookup) -> (sigma [M], feature [M,G], ||dx||^2)`: deform
  (gate = detached torso-ness at x, x' = x + gate * W(x, pose); only points with gate > 0 run the deformation),
  then the field's density; `colour(feature, d [M,3], aud, coarse) -> (rgb [M,3], logits [M,C] | None)`; `query`
  is both.
  `coarse` picks the coarse field (mlp backbone: AD-NeRF's two networks); `torso_lookup(x) -> [M]` replaces the
  field's torso-ness with a cached one (the hash backbone's occupancy grid caches it: one hash-grid lookup less
  per sample, ~40% of a training step on the CPU).
- `occ_eval_fn(code [A]) -> fn(x [M,3]) -> (density [M], torso-ness [M] | None)`: the canonical field's density
  for the occupancy grid (and the torso-ness it caches).
- `torso_warp(pose [N,6], torso_lookup) -> fn(pts [N,S,3], todo [N,S]) -> (idx [K], moved [K,3])` or None: which
  samples the camera anchor and the rigid torso motion move, and where (the occupancy grid keeps them occupied there).
"""
from __future__ import annotations

from dataclasses import dataclass, field as dc_field

import torch
from torch import Tensor, nn

from nerf.audio import AudioAttNet, AudioNet
from nerf.deformation import TorsoDeformation, height_gate, height_gate_of_y
from nerf.field import HashField, MLPField
from nerf.mouth_shape import MouthPredictor

FRAME_CODE_DIM = 8  # the per-frame code's channels where the data turns it on (RAD-NeRF / ER-NeRF: 4)
GATE_FLOOR = 0.01  # a semantic gate at or below this is 0 (the point stays with the head, the network skipped)
SURE_TORSO = (0.5, 0.8)  # deform_gate height+torso: the torso probability that starts to move a point, and that
#                          moves it fully (a point the head is unsure of stays with the head)


def sure_torso(prob: Tensor) -> Tensor:
    """Torso probabilities [M] -> the height+torso gate's semantic part [M]: 0 up to SURE_TORSO[0], 1 from
    SURE_TORSO[1], linear between."""
    lo, hi = SURE_TORSO
    return ((prob - lo) / (hi - lo)).clamp(0.0, 1.0)


@dataclass
class ModelConfig:
    """The `model` section (its fields are the checkpoint's fingerprint)."""
    backbone: str = dc_field(default="hash", metadata={"choices": ("hash", "mlp")})  # hash (fast) | mlp (AD-NeRF)
    semantic: bool = True  # semantic parsing head (ablation: false)
    deform: bool = True  # torso deformation field (ablation: false)
    aud_code_dim: int = 64  # audio code size (AudioNet output)
    audio_code: bool = False  # false (default since 2026-12-06): the field hears the audio only through the mouth shape predicted from it (mouth = true), which carries to unheard speech; true: also a learned audio code (AudioNet + attention, AD-NeRF), on whenever the mouth input is off
    eyes: bool = True  # eye openness (per frame, from the landmarks) as an input of the field: blinks at render time (render.py --blink); off when the dataset has none
    eye_code: str = dc_field(default="closure", metadata={"choices": ("closure", "openness")})  # the eye input as the field sees it: closure (0 open, 1 at the training clip's blinks, nerf/blinks.closed_level, kept with the model) | openness (1 open, ~0.3 shut; checkpoints before 2026-12-03)
    eye_region: bool = True  # the eye input acts only around the eyes of the tracked face (a Gaussian of 0.6 eye widths about each eye centre, head frame); false: the field may use it anywhere
    mouth: bool = True  # the mouth shape (lip opening and width) as an input of the field, predicted from the audio by a ridge regression fitted on the shapes the landmarks measure on the training frames (nerf/mouth_shape.py; what training frames see: train key mouth_teacher); off when the dataset has no landmarks.npy
    mouth_calibrate: bool = True  # each output of the mouth input's regression through a monotone curve (isotonic, fitted on its held-out predictions; nerf/mouth_shape.py): a shut mouth predicted shut, the widest openings reached
    mouth_envelope: bool = True  # the mouth input's regression also reads the speech's amplitude envelope (exp of the MFCC log energy / 2; nerf/mouth_shape.py), which the lip opening follows on a linear scale; no effect with other extractors
    mouth_deemphasis: bool = True  # with mouth_envelope: the envelope undoes the MFCC extractor's pre-emphasis (read back from the features' cepstrum; nerf/mouth_shape.py), so that its amplitude does not depend on the vowel
    frame_code: int = 0  # > 0: a learned code of this many channels joins the condition, a function of the frame's time in the clip (keyframes every frame_code_step frames, linearly interpolated: RAD-NeRF / ER-NeRF's individual codes, smooth in time), to tell apart frames that nothing else given to the field does (a silent or dubbed clip's expressions); renders take the code of the training frame whose pose they use (poses.json: the one nearest in camera position). 0 (default): none; left unset, turned on where the audio hardly predicts the mouth (nerf/pipeline.build_for_data); where it does, the code takes over part of the mouth (24 s sample: lips -2.6 dB)
    frame_code_step: int = 25  # frame_code: frames between its keyframes (1 s at 25 fps; wolfgang's held-out mouth landmark distance: 3.1 px with 12 frames, 1.5 with 25, 1.8 with 50; benchmarks/NOTES.md)
    audio_at_eyes: bool = False  # with eye_region: false (default) fades the audio code out at the eyes (1 - a Gaussian of half the eye radius), so only the eye input opens and closes them
    region_attention: bool = False  # per-point gates on the condition (ER-NeRF's region attention): the audio code in region_groups groups, the eye input its own; false: every point sees the same code (AD-NeRF)
    region_groups: int = 8  # region attention: groups of audio-code channels, one gate each
    smooth: int = dc_field(default=4, metadata={"key": "audio_smooth", "aliases": ("smooth",)})  # audio attention over 2*smooth+1 neighbouring frames (AD-NeRF: 8)
    density_act: str = dc_field(default="auto", metadata={"choices": ("auto", "softplus", "trunc_exp", "relu")})  # auto: softplus for mlp, trunc_exp for hash
    mlp_width: int = 256  # mlp backbone: layer width (AD-NeRF 256)
    mlp_depth: int = 8  # mlp backbone: layers (AD-NeRF 8, skip after 4)
    pe_pts: int = 10  # mlp backbone: frequencies of the point encoding (AD-NeRF 10)
    pe_dirs: int = 4  # frequencies of the direction encoding (AD-NeRF 4)
    view_dirs: str = dc_field(default="eyes", metadata={"choices": ("all", "eyes", "none")})  # where colour sees the view direction: eyes (default: only round the eyes, where gaze makes it real; all, as AD-NeRF, when the model has no eye region) | all (AD-NeRF) | none. Seen at the mouth, it lets the field tie the mouth to a head pose: an expression the clip shows at one pose comes back at that pose whatever the new audio says
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
    deform_gate: str = dc_field(default="height+torso", metadata={"choices": ("height", "height+torso", "semantic")})  # which points deform: height+torso (default since 2026-12-07): below the jaw, and up to two gate widths above it where the field's semantic head is sure of torso (a collar or shoulders that rise beside the chin; 24 s sample, two seeds: +3.7 dB overall, the shoulder's smear gone; benchmarks/NOTES.md) | height: below the jaw only | semantic: the field's neck+torso probability alone (the lower face follows the torso: face -2.3 dB, one seed). Without the semantic head: height
    gate_jaw_y: float = 0.09  # geometric gate: head-frame y (down) of the jaw
    gate_width: float = 0.03  # geometric gate: rises from 0 at the jaw to 1 this far below it


def rows(v: Tensor, idx: Tensor) -> Tensor:
    """v[idx] for per-ray values v [N, k]; v itself when it has one row shared by all rays ([1, k])."""
    return v if v.shape[0] == 1 else v[idx]


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
    def __init__(self, model_cfg: ModelConfig, aud_dim: int, n_classes: int, aabb: Tensor, torso_classes: list[int],
                 anchor_t: Tensor | None = None, pose_ref: Tensor | None = None, eye_region: Tensor | None = None,
                 eye_closed: float | None = None, frame_ids: Tensor | None = None):
        """anchor_t [3]: the mean head translation (camera space) of the training frames (deform_anchor=camera);
        pose_ref [6]: their mean pose6 (deform_rigid); eye_region [2,4]: eye centres and radii (eye_region);
        eye_closed: the training clip's openness at its blinks (eye_code closure; None: 0.3); frame_ids [F]: the
        training frames' numbers in the clip (frame_code: its keyframes span them).
        All are buffers, restored from a checkpoint."""
        super().__init__()
        mc = model_cfg
        if mc.backbone not in ("hash", "mlp"):
            raise ValueError(f"backbone must be hash or mlp, got {mc.backbone!r}")
        self.mc = mc
        aabb = torch.as_tensor(aabb, dtype=torch.float32).reshape(6)
        self.register_buffer("aabb", aabb)
        self.n_classes = n_classes if mc.semantic else 0
        self.eye_dim = 1 if mc.eyes else 0  # the condition: [audio code, frame code, mouth shape, eye openness]
        self.mouth_dim = 2 if mc.mouth else 0
        if not mc.audio_code and not mc.mouth:
            raise ValueError("audio_code = false needs the mouth input (mouth = true and the dataset's landmarks.npy):"
                             " without either the field would not hear the audio")
        self.code_dim = mc.aud_code_dim if mc.audio_code else 0  # the learned audio code's channels
        self.frame_dim = max(int(mc.frame_code), 0)  # the learned per-frame code's channels
        if self.frame_dim:
            if frame_ids is None or len(frame_ids) == 0:
                raise ValueError("frame_code needs the training frames' numbers (build the model from a dataset)")
            ids = torch.as_tensor(frame_ids, dtype=torch.long).reshape(-1)
            self.register_buffer("frame_ids", ids.clone())  # keyframe 0 is at the first, the last past the last
            if mc.frame_code_step < 1:
                raise ValueError(f"frame_code_step must be at least 1, got {mc.frame_code_step}")
            n_keys = int(ids.max() - ids.min()) // mc.frame_code_step + 2
            self.frame_codes = nn.Parameter(torch.zeros(n_keys, self.frame_dim))  # [K,dim]: all frames alike at first
        self.cond_dim = self.code_dim + self.frame_dim + self.mouth_dim + self.eye_dim
        self.mouth = MouthPredictor(aud_dim, mc.mouth_envelope, mc.mouth_calibrate, mc.mouth_deemphasis) if mc.mouth else None  # audio -> mouth shape (fitted by the pipeline)
        if mc.eye_code not in ("closure", "openness"):
            raise ValueError(f"eye_code must be closure or openness, got {mc.eye_code!r}")
        if self.eye_dim and mc.eye_code == "closure":  # the openness that the closure code maps to 1
            self.register_buffer("eye_closed", torch.tensor(0.3 if eye_closed is None else float(eye_closed)))
        gated_eyes = bool(self.eye_dim and mc.eye_region)
        groups = None
        if mc.region_attention or gated_eyes:  # audio channel i -> group i * G // A (G = 1: ungated); the mouth
            g = max(1, min(mc.region_groups, self.code_dim)) if mc.region_attention else 1  # its own group when
            own = mc.region_attention and self.mouth_dim  # the gates are learned (else the audio's), the eye last
            mouth, eye = (g, g + 1) if own else (g - 1, g)
            groups = ([i * g // self.code_dim for i in range(self.code_dim)] + [0] * self.frame_dim
                      + [mouth] * self.mouth_dim + [eye] * self.eye_dim)  # the frame code: with the audio's first
        gating = {"cond_groups": groups, "learned_gates": mc.region_attention, "eye_region": gated_eyes,
                  "quiet_eyes": gated_eyes and not mc.audio_at_eyes,
                  "view_dirs": "all" if mc.view_dirs == "eyes" and not gated_eyes else mc.view_dirs}  # no eyes: all
        if mc.audio_code:
            self.audio_net = AudioNet(aud_dim, mc.aud_code_dim)
            self.audio_att = AudioAttNet(mc.aud_code_dim, 2 * mc.smooth + 1)
        self.deformation = TorsoDeformation(aabb, mc.deform_freqs, mc.deform_width, anchor=mc.deform_anchor,
                                            anchor_t=anchor_t, rigid=mc.deform_rigid,
                                            pose_ref=pose_ref) if mc.deform else None
        self.torso_classes = [c for c in torso_classes if 0 <= c < self.n_classes]
        act = mc.density_act
        if mc.backbone == "mlp":  # two networks (NeRF / AD-NeRF): a coarse one for the sampling, the fine one
            act = "softplus" if act == "auto" else act
            make = lambda: MLPField(self.cond_dim, self.n_classes, mc.mlp_width, mc.mlp_depth, mc.pe_pts,  # noqa
                                    mc.pe_dirs, act, **gating)
            self.coarse_field = make()  # registered first: the parameter order of older checkpoints
            self.field = make()
        else:
            act = "trunc_exp" if act == "auto" else act
            self.field = HashField(aabb, self.cond_dim, self.n_classes, mc.hash_levels, mc.hash_features,
                                   mc.hash_log2_table, mc.hash_base_res, mc.hash_max_res, mc.hash_width,
                                   mc.geo_dim, mc.pe_dirs, act, **gating)
            self.coarse_field = None
        if gated_eyes and eye_region is not None:
            for fld in (self.field, self.coarse_field):
                if fld is not None:
                    fld.gates.eye_region.copy_(torch.as_tensor(eye_region, dtype=torch.float32).view(2, 4))

    # ---- audio and eyes -----------------------------------------------------------------------------------
    def condition(self, codes: Tensor, eye: Tensor | None, mouth: Tensor | None = None,
                  frames: Tensor | None = None) -> Tensor:
        """Audio codes [F,A], eye openness [F] (None: open, 1), mouth shape [F,2] (opening, width; None: the
        training frames' mean) and the frames' numbers in the clip [F] (frame_code; None: the first training
        frame's) -> the field's per-frame condition [F,cond_dim] = [codes, frame code, mouth z-scores, eye].

        eye_code closure feeds (1 - openness) / (1 - eye_closed), clamped to [-0.5, 1.5]: 0 on the usual open eye
        (most frames, so the input is no bias there) and 1 at the clip's blinks."""
        if self.frame_dim:
            codes = torch.cat([codes, self.frame_code(frames, codes.shape[0]).to(codes)], -1)
        if self.mouth is not None:
            z = codes.new_zeros(codes.shape[0], 2) if mouth is None else self.mouth.normalise(mouth.to(codes))
            codes = torch.cat([codes, z], -1)
        if not self.eye_dim:
            return codes
        eye = codes.new_ones(codes.shape[0]) if eye is None else eye.to(codes)
        if self.mc.eye_code == "closure":
            eye = ((1 - eye) / (1 - self.eye_closed).clamp_min(0.1)).clamp(-0.5, 1.5)
        return torch.cat([codes, eye.view(-1, 1)], -1)

    def frame_code(self, frames: Tensor | None, n: int) -> Tensor:
        """Clip frame numbers [n] (None: the first training frame's) -> the per-frame code [n,frame_dim]: the
        keyframes' codes linearly interpolated, held at the first and the last training frame's (a frame outside
        the training frames takes the code of the nearer end; the last keyframe, past the last training frame, is
        learned only as far as it weighs in that frame's code, so nothing reads it beyond)."""
        keys = self.frame_codes
        if frames is None:
            return keys[:1].expand(n, -1)
        step = self.mc.frame_code_step
        first, last = self.frame_ids.min(), self.frame_ids.max()
        pos = ((frames.to(keys.device).float() - first) / step).clamp(0, float(last - first) / step)
        i0 = pos.floor().long().clamp(max=len(keys) - 2)  # (K >= 2: the last keyframe lies past the last frame)
        w = (pos - i0)[:, None]
        return keys[i0] * (1 - w) + keys[i0 + 1] * w

    def audio_codes(self, aud: Tensor, use_attention: bool) -> Tensor:
        """aud [F, W, 16, D] (W neighbouring windows, centre in the middle) -> codes [F, code_dim] ([F, 0] without
        the audio code)."""
        f, w = aud.shape[:2]
        if not self.code_dim:
            return aud.new_zeros(f, 0)
        if not use_attention:  # only the centre window matters (AudioNet is per window: no batch statistics)
            return self.audio_net(aud[:, w // 2])
        return self.audio_att(self.audio_net(aud.reshape(f * w, *aud.shape[2:])).view(f, w, -1))

    # ---- density / colour callbacks -----------------------------------------------------------------------
    @property
    def semantic_gate(self) -> bool:
        """Whether the deformation gate reads the field's semantic head (semantic, height+torso; else the height
        gate alone)."""
        return self.mc.deform_gate != "height" and self.n_classes > 0 and bool(self.torso_classes)

    def torso_gate(self, x: Tensor, aud: Tensor | None, coarse: bool = False, torso_lookup=None) -> Tensor:
        """Detached torso-ness of undeformed points x [M,3] -> [M] in [0, 1] (deform_gate): the height gate; the
        field's probability p of the gate's classes (the occupancy grid's cache of it when given); or the larger of
        the height gate and sure_torso(p), the latter only up to two gate widths above the jaw line."""
        if not self.semantic_gate:
            return height_gate(x, self.mc.gate_jaw_y, self.mc.gate_width)
        if self.mc.deform_gate == "semantic":
            # a softmax is never 0: without a floor every point would run the deformation network for an offset of
            # a hundredth of the torso's (the estimator's warp ignores the same points)
            prob = self.torso_probability(x, aud, coarse, torso_lookup)
            return torch.where(prob > GATE_FLOOR, prob, torch.zeros_like(prob))
        jaw, width = self.mc.gate_jaw_y, self.mc.gate_width
        gate = height_gate(x, jaw, width)
        below_cap = height_gate(x, self.gate_top(), width)  # 0 above jaw - 2 width (ears, cheeks), 1 from jaw - width
        band = ((below_cap > 0) & (gate < 1)).nonzero()[:, 0]  # the semantic head is asked only here
        if band.numel():
            codes = None if aud is None else rows(aud, band)
            sure = sure_torso(self.torso_probability(x[band], codes, coarse, torso_lookup))
            gate[band] = torch.maximum(gate[band], sure * below_cap[band])
        return gate

    def gate_top(self) -> float | None:
        """The head-frame height y above which torso_gate is 0 whatever the point (y down): the jaw line for the
        height gate, the cap two gate widths above it for height+torso; None for the semantic gate."""
        if not self.semantic_gate:
            return self.mc.gate_jaw_y
        if self.mc.deform_gate == "height+torso":
            return self.mc.gate_jaw_y - 2 * self.mc.gate_width
        return None

    def torso_probability(self, x: Tensor, aud: Tensor | None, coarse: bool = False, torso_lookup=None) -> Tensor:
        """The field's probability [M] of the gate's classes at x [M,3] (no gradient), or the occupancy grid's cache
        of it (torso_lookup)."""
        if torso_lookup is not None:
            return torso_lookup(x)
        with torch.no_grad():
            return self.torso_share(self.field_of(coarse).semantics(x, aud))

    def torso_share(self, logits: Tensor) -> Tensor:
        """Semantic logits [M,C] -> the probability [M] of the gate's classes."""
        return torch.softmax(logits, -1)[:, self.torso_classes].sum(-1)

    def field_of(self, coarse: bool) -> nn.Module:
        """The coarse field (mlp backbone's coarse pass) or the field."""
        return self.coarse_field if coarse else self.field

    def deform(self, x: Tensor, aud: Tensor, pose: Tensor, coarse: bool = False,
               torso_lookup=None) -> tuple[Tensor, Tensor]:
        """x [M,3] -> (x + dx [M,3], mean ||residual||^2 over the M points). Points whose gate is 0 (the head) have
        dx = 0 exactly, so the deformation network only runs on the others."""
        if self.deformation is None or x.shape[0] == 0:
            return x, x.new_zeros(())
        gate = self.torso_gate(x, aud, coarse, torso_lookup)
        moving = (gate > 0).nonzero()[:, 0]
        if moving.numel() == x.shape[0]:
            dx, reg = self.deformation(x, pose, gate)
            return x + dx, reg
        dx, reg = self.deformation(x[moving], rows(pose, moving), gate[moving])
        return x.index_add(0, moving, dx), reg * (moving.numel() / x.shape[0])

    def density(self, x: Tensor, aud: Tensor, pose: Tensor, coarse: bool = False,
                torso_lookup=None) -> tuple[Tensor, Tensor, Tensor]:
        """Deform (when on), then the (coarse) field's density at x [M,3]: sigma [M], feature [M,G] (for `colour`),
        the deformation's mean ||dx||^2 (scalar). aud [M,A] codes, pose [M,6]."""
        x, reg = self.deform(x, aud, pose, coarse, torso_lookup)
        sigma, feat = self.field_of(coarse).density(x, aud)
        return sigma, feat, reg

    def colour(self, feat: Tensor, d: Tensor, aud: Tensor, coarse: bool = False,
               semantics: bool = True) -> tuple[Tensor, Tensor | None]:
        """feature [M,G] from `density`, unit directions d [M,3], codes aud [M,A] -> rgb [M,3], logits [M,C] | None
        (None also without `semantics`: an RGB-only render)."""
        return self.field_of(coarse).colour(feat, d, aud, semantics)

    def query(self, x: Tensor, d: Tensor, aud: Tensor, pose: Tensor, coarse: bool = False,
              torso_lookup=None) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """density then colour at x [M,3]: sigma [M], rgb [M,3], logits [M,C] | None, the deformation's mean ||dx||^2."""
        sigma, feat, reg = self.density(x, aud, pose, coarse, torso_lookup)
        rgb, logits = self.colour(feat, d, aud, coarse)
        return sigma, rgb, logits, reg

    def occ_eval_fn(self, code: Tensor):
        """The occupancy grid's callback for one audio code [A]: x [M,3] (canonical) -> (density [M],
        torso-ness [M] or None when the gate does not use it)."""
        def fn(x: Tensor) -> tuple[Tensor, Tensor | None]:
            sigma, logits = self.field.density_and_semantics(x, code.view(1, -1))
            torso = None
            if logits is not None and self.torso_classes:
                torso = self.torso_share(logits)
            return sigma, torso
        return fn

    def torso_warp(self, pose: Tensor, torso_lookup=None):
        """pose [N,6] -> warp_fn(pts [N,S,3], todo [N,S]) -> (idx [K], moved [K,3]) for the estimator: the points
        among `todo` that the camera anchor and the rigid torso motion move (flat indices into the N*S samples) and
        where they move to (the per-point residual is covered by the grid's dilation). None when the deformation
        cannot move the torso."""
        if self.deformation is None or not self.deformation.has_torso_motion:
            return None

        def warp(pts: Tensor, todo: Tensor) -> tuple[Tensor, Tensor]:
            s = pts.shape[1]
            motion = self.deformation.frame_motion(pose)  # once per ray (or frame), not per sample
            flat = pts.flatten(0, 1)  # [N*S,3], a view whatever the memory order of the axes
            cand = todo.reshape(-1).nonzero()[:, 0]
            top = self.gate_top()
            if top is not None:  # y alone rules out the points above the gate's reach: x and z only of the rest
                y = flat[cand, 1]
                below = y > top
                cand, y = cand[below], y[below]
            if self.semantic_gate:  # the field's (or the grid's cached) torso-ness needs the whole point
                gate = self.torso_gate(flat[cand], None, torso_lookup=torso_lookup)
            else:  # the height gate needs y alone
                gate = height_gate_of_y(y, self.mc.gate_jaw_y, self.mc.gate_width)
            sel = cand[gate > GATE_FLOOR]
            ray = torch.div(sel, s, rounding_mode="floor")
            per_point = tuple(None if m is None else rows(m, ray) for m in motion)
            x = flat[sel]
            return sel, x + self.deformation.torso_motion(x, rows(pose, ray), per_point)
        return warp
