"""The unified audio-conditioned field: (x, d, audio code) -> (density, colour, semantic logits).

Backbones:
- `MLPField`: AD-NeRF's FaceNeRF: PE(x) (10 freqs) + audio code -> 8 x 256 ReLU layers (input re-injected
  after layer 4) -> density; a 256-d feature + PE(d) (4 freqs) -> 128 -> rgb; a linear semantic head on the feature.
- `HashField`: hash grid features + audio code -> small MLP -> density and a geometric feature; a linear
  semantic head on the feature; colour MLP on (feature, frequency-encoded direction, audio code) -> rgb.
Density activation `softplus` or `trunc_exp`; rgb through a sigmoid.
With `cond_groups` a `ConditionGates` gates the per-frame condition per point: the point's own spatial encoding
(ModelConfig.region_attention) and, for the eye openness, its distance to the eyes (ModelConfig.eye_region) say how
much of each group of condition channels it sees, so the audio drives the mouth and the eye input the eyes instead
of the whole head (ER-NeRF's region attention).
Both offer the two halves separately: `density(x, aud) -> (sigma, feature)` and `colour(feature, d, aud) -> (rgb,
logits)`, so that the fast renderer (nerf/marching.py) computes colour only where a sample's weight matters.
The audio code `aud` is [N,A], or [1,A] when all N points share it (a rendered frame): the hash field's first
layers then project it once instead of once per point.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerf import cpu_kernels
from nerf.encodings import FrequencyEncoding, HashGridEncoding


class _TruncExp(torch.autograd.Function):
    """exp(x) with the gradient clamped to exp(15) (Instant-NGP's density activation)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(max=15))


FALLOFF_CUT = 2 * math.log(1e12)  # eye_falloff is exactly 0 beyond this d2 (where it would be below 1e-12)


def eye_falloff(d2: Tensor) -> Tensor:
    """exp(-d2 / 2) of squared distances in eye radii [M,1], set to exactly 0 below 1e-12. Far from the eyes the
    exponential underflows through denormal floats, which make the CPU's matrix products on them ~15x slower
    (benchmarks/NOTES.md: 42 vs 3 ms for the colour net's first layer on 105k points); 1e-12 is far below what
    float32 activations resolve. The argument is clamped before the exponential, which is itself ~30x slower on the
    CPU where its result underflows."""
    return torch.exp(-0.5 * d2.clamp(max=FALLOFF_CUT)).masked_fill(d2 > FALLOFF_CUT, 0.0)


def one_minus_exp(x: Tensor) -> Tensor:
    """1 - exp(-x) for x >= 0, with x clamped at 80 first: the same floats (exp(-80) ~ 2e-35 leaves 1 exactly), without
    the exponential's slow underflowing results."""
    return 1 - torch.exp(-x.clamp(max=80.0))


def density_activation(raw: Tensor, kind: str) -> Tensor:
    if kind == "softplus":
        return F.softplus(raw)
    if kind == "trunc_exp":
        return _TruncExp.apply(raw)
    if kind == "relu":
        return F.relu(raw)
    raise ValueError(f"unknown density activation {kind!r} (softplus | trunc_exp | relu)")


def fold_shared_rows(weight: Tensor, bias: Tensor,
                     parts: list[Tensor]) -> tuple[list[Tensor], list[Tensor], Tensor, int]:
    """A layer's input given as parts (per-point [M,k] or one row [1,k] shared by all points) -> (the per-point
    parts, their columns of weight [W,k], the bias with the shared rows' products folded in, the columns used)."""
    per_point, cols, start = [], [], 0
    for p in parts:
        w = weight[:, start:start + p.shape[-1]]
        start += p.shape[-1]
        if p.shape[0] == 1:
            bias = bias + F.linear(p[0], w)
        else:
            per_point.append(p)
            cols.append(w)
    return per_point, cols, bias, start


def linear_of_parts(layer: nn.Linear, parts: list[Tensor]) -> Tensor:
    """layer(torch.cat(parts, -1)) where a part may be one row [1,k] shared by all M points (e.g. a frame's audio
    code): its product with its columns of the weight is folded into the bias once, not computed per point."""
    if all(p.shape[0] != 1 for p in parts) or all(p.shape[0] == 1 for p in parts):
        return layer(torch.cat(parts, -1))
    per_point, cols, bias, _ = fold_shared_rows(layer.weight, layer.bias, parts)
    if len(per_point) == 1:  # no copy of the one per-point part
        return F.linear(per_point[0], cols[0], bias)
    return F.linear(torch.cat(per_point, -1), torch.cat(cols, 1), bias)


def kernel_mlp(layers: list[nn.Linear], parts: list[Tensor],
               gated: tuple["ConditionGates", Tensor, Tensor] | None = None, extra: list[Tensor] = (),
               bf16: bool = False) -> Tensor:
    """The ReLU MLP `layers` (ReLU between them, none after the last) on cat(parts [+ the gated condition]) through
    the compiled kernel (nerf/cpu_kernels.py; cpu_kernels.mlp_applies must hold): the first layer's input becomes
    one [M,K] product, folded as linear_of_parts and ConditionGates.add_gated_linear fold it. parts: per-point [M,k]
    or one row [1,k] shared by all M points (folded into the bias); gated: (the ConditionGates, condition [1,C] or
    [M,C], gates [M,G]) when the condition is gated per point: a shared row enters as the gates times their folded
    weight, per-point rows as the gated condition. extra: columns [M,e] appended to the output. bf16: bfloat16
    products where the CPU has AMX (cpu_kernels.mlp)."""
    first = layers[0]
    xs, cols, bias, start = fold_shared_rows(first.weight, first.bias, parts)
    if gated is not None:
        module, cond, gates = gated
        w = first.weight[:, start:]
        if cond.shape[0] == 1:
            xs.append(gates), cols.append(module.folded_weight(w, cond))
        else:
            xs.append(module.gate(cond, gates)), cols.append(w)
    w0 = cols[0] if len(cols) == 1 else torch.cat(cols, 1)
    return cpu_kernels.mlp(xs, [(w0, bias), *[(m.weight, m.bias) for m in layers[1:]]], extra, bf16=bf16)


def linears(seq: nn.Sequential) -> list[nn.Linear]:
    """The Linear layers of a Linear / ReLU stack."""
    return [m for m in seq if isinstance(m, nn.Linear)]


class ConditionGates(nn.Module):
    """Per-point gates on the frame condition (audio code channels, then the eye openness): a point sees
    gate * condition. `cond_groups[i]` is channel i's group; each group gets one gate [M,G] in [0, 1]:
    - learned (`learned`, ER-NeRF's region attention): sigmoid of a linear layer on the point's own spatial
      encoding; starts at 0.5 everywhere (zero weights);
    - the eye region (`eye_region`, the last group: the eye openness): exp(-d^2 / 2 r^2), d the distance to the
      nearer eye centre of the tracked face (head frame) and r its radius (buffer `eye_region` [2,4]: centre xyz,
      radius), so that eyelids open and close at the eyes and nowhere else; times the learned gate when both;
    - with `quiet_eyes`, the audio groups are faded out at the eyes: times 1 - exp(-d^2 / 2 (QUIET_SHARE r)^2), so
      that the eyelids follow the eye input alone and cannot be tied to the audio of the few blink frames;
    - otherwise 1.
    A model built without the eye centres (radii 0) must have them restored from a checkpoint before use."""

    QUIET_SHARE = 0.5  # quiet_eyes: radius of the audio's fade-out, as a share of the eye radius

    def __init__(self, n_enc: int, cond_groups: list[int], learned: bool = True, eye_region: bool = False,
                 quiet_eyes: bool = False):
        super().__init__()
        if quiet_eyes and not eye_region:
            raise ValueError("ConditionGates: quiet_eyes needs the eye region")
        self.quiet_eyes = quiet_eyes
        self.n_groups = max(cond_groups) + 1
        self.net = nn.Linear(n_enc, self.n_groups) if learned else None
        if self.net is not None:
            nn.init.zeros_(self.net.weight)
            nn.init.zeros_(self.net.bias)
        self.has_eye_region = eye_region
        self._region_checked = False
        if eye_region:
            self.register_buffer("eye_region", torch.zeros(2, 4))  # set by the model, restored from checkpoints
        onehot = F.one_hot(torch.tensor(cond_groups), self.n_groups).float()
        self.register_buffer("onehot", onehot, persistent=False)  # [C,G] channel -> its group

    def forward(self, enc: Tensor, x: Tensor, d2: Tensor | None = None) -> Tensor:
        """Spatial encoding [M,E] and position [M,3] (and its eye_distance2 [M,1] when already known) -> gates [M,G]."""
        g = torch.sigmoid(self.net(enc)) if self.net is not None else enc.new_ones(enc.shape[0], self.n_groups)
        if not self.has_eye_region:
            return g
        d2 = self.eye_distance2(x) if d2 is None else d2
        audio = g[:, :-1] * one_minus_exp(0.5 * d2 / self.QUIET_SHARE ** 2) if self.quiet_eyes else g[:, :-1]
        return torch.cat([audio, g[:, -1:] * eye_falloff(d2)], 1)

    def eye_distance2(self, x: Tensor) -> Tensor:
        """Squared distance of each point [M,3] to the nearer eye centre, in eye radii -> [M,1]."""
        centre, radius = self.eye_region[:, :3], self.eye_region[:, 3]
        if not self._region_checked:
            if not bool((radius > 0).all()):
                raise RuntimeError("eye_region: the eye centres were never set (build the model from a dataset's "
                                   "ModelMeta or load a checkpoint)")
            self._region_checked = True
        xt = x.T.contiguous()  # [3,M]: each pass runs along the points, not in loops of 3 (2x faster on the CPU)
        d2 = [((xt - centre[e, :, None]) ** 2).sum(0) / radius[e] ** 2 for e in range(centre.shape[0])]
        return torch.stack(d2, -1).min(-1).values[:, None]

    def gate(self, cond: Tensor, gates: Tensor) -> Tensor:
        """cond [M,C] or [1,C], gates [M,G] -> the gated condition [M,C]."""
        return (gates @ self.onehot.T) * cond

    def add_gated_linear(self, base: Tensor, weight: Tensor, cond: Tensor, gates: Tensor) -> Tensor:
        """base [M,W] + F.linear(gate(cond, gates), weight) for weight [W,C]; with one condition row for all points
        ([1,C]) the per-group products are summed once and each point costs a [G]x[G,W] product instead of
        [C]x[C,W], accumulated into base in place (no [M,W] temporary)."""
        if cond.shape[0] == 1:
            return base.addmm_(gates, self.folded_weight(weight, cond).T)
        return base + F.linear(self.gate(cond, gates), weight)

    def folded_weight(self, weight: Tensor, cond: Tensor) -> Tensor:
        """weight [W,C] times one condition row [1,C], summed per group -> [W,G]: gates [M,G] @ its transpose is
        F.linear(gate(cond, gates), weight)."""
        return (weight * cond) @ self.onehot


VIEW_DIRS = ("all", "eyes", "none")


def direction_encoding(view_dirs: str, pe_dirs: int, eye_region: bool) -> FrequencyEncoding | None:
    """The colour net's direction encoding for `view_dirs` (None: no view directions)."""
    if view_dirs not in VIEW_DIRS:
        raise ValueError(f"view_dirs = {view_dirs}: choose from {' | '.join(VIEW_DIRS)}")
    if view_dirs == "eyes" and not eye_region:
        raise ValueError("view_dirs = eyes needs the eye region (eyes = true, eye_region = true)")
    return None if view_dirs == "none" else FrequencyEncoding(pe_dirs)


def direction_dim(enc_d: FrequencyEncoding | None) -> int:
    """Width of the colour net's direction input (0 without view directions)."""
    return 0 if enc_d is None else enc_d.out_dim


def directions(enc_d: FrequencyEncoding | None, d: Tensor, weight: Tensor | None = None) -> list[Tensor]:
    """The colour net's direction part, as the encoding's column blocks ([d, sin, cos]: the net concatenates them, the
    MLP kernel reads them in place), times weight [N,1] when given; [] without view directions."""
    if enc_d is None:
        return []
    parts = enc_d.parts(d)
    return parts if weight is None else [p * weight for p in parts]


def mlp(n_in: int, width: int, n_out: int, n_hidden: int) -> nn.Sequential:
    """n_hidden ReLU layers of `width`, then a linear layer to n_out."""
    layers, ch = [], n_in
    for _ in range(n_hidden):
        layers += [nn.Linear(ch, width), nn.ReLU(True)]
        ch = width
    layers.append(nn.Linear(ch, n_out))
    return nn.Sequential(*layers)


class MLPField(nn.Module):
    """AD-NeRF's 8x256 positional-encoding MLP with a skip at layer 4, plus a semantic head."""

    def __init__(self, aud_dim: int, n_classes: int, width: int = 256, depth: int = 8, pe_pts: int = 10,
                 pe_dirs: int = 4, density_act: str = "relu", skip: int | None = None,
                 cond_groups: list[int] | None = None, learned_gates: bool = True, eye_region: bool = False,
                 quiet_eyes: bool = False, view_dirs: str = "all"):
        super().__init__()
        self.enc_x = FrequencyEncoding(pe_pts)
        self.enc_d = direction_encoding(view_dirs, pe_dirs, eye_region)
        self.dirs_at_eyes = view_dirs == "eyes"
        self.gates = (ConditionGates(self.enc_x.out_dim, cond_groups, learned_gates, eye_region, quiet_eyes)
                      if cond_groups else None)
        n_in = self.enc_x.out_dim + aud_dim
        self.skip = depth // 2 if skip is None else skip  # AD-NeRF: 4 of 8
        self.density_act = density_act
        self.layers = nn.ModuleList()
        ch = n_in
        for i in range(depth):
            self.layers.append(nn.Linear(ch, width))
            ch = width + n_in if i == self.skip - 1 else width  # the input re-enters after layer `skip`
        self.sigma = nn.Linear(width, 1)
        self.feature = nn.Linear(width, width)
        self.view = nn.Linear(width + direction_dim(self.enc_d), width // 2)
        self.rgb = nn.Linear(width // 2, 3)
        self.sem = nn.Linear(width, n_classes) if n_classes > 0 else None

    def _trunk(self, x: Tensor, aud: Tensor, d2: Tensor | None = None) -> Tensor:  # [N,3],[N,A] or [1,A] -> [N,width]
        """d2: the points' eye_distance2 [N,1] when already known."""
        enc = self.enc_x(x)
        cond = aud.expand(x.shape[0], -1) if self.gates is None else self.gates.gate(aud, self.gates(enc, x, d2))
        inp = torch.cat([enc, cond], -1)
        h = inp
        for i, layer in enumerate(self.layers):
            h = F.relu(layer(h))
            if i == self.skip - 1:
                h = torch.cat([inp, h], -1)
        return h

    def semantics(self, x: Tensor, aud: Tensor) -> Tensor | None:  # [N, C] logits, colour branch skipped
        return None if self.sem is None else self.sem(self.feature(self._trunk(x, aud)))

    def density(self, x: Tensor, aud: Tensor) -> tuple[Tensor, Tensor]:
        """x [N,3], aud [N,A] -> sigma [N], feature [N,width] (+ the eye weight [N,1] with view_dirs = eyes: what
        `colour` needs)."""
        d2 = self.gates.eye_distance2(x) if self.dirs_at_eyes else None  # [N,1], shared with the gates
        h = self._trunk(x, aud, d2)
        feat = self.feature(h)
        if self.dirs_at_eyes:
            feat = torch.cat([feat, eye_falloff(d2)], -1)
        return density_activation(self.sigma(h)[:, 0], self.density_act), feat

    def colour(self, feat: Tensor, d: Tensor, aud: Tensor, semantics: bool = True) -> tuple[Tensor, Tensor | None]:
        """feature from `density`, unit directions d [N,3] -> rgb [N,3], logits [N,C] | None (also without
        `semantics`)."""
        weight = None
        if self.dirs_at_eyes:
            feat, weight = feat[:, :-1], feat[:, -1:]
        rgb = torch.sigmoid(self.rgb(F.relu(self.view(torch.cat([feat, *directions(self.enc_d, d, weight)], -1)))))
        return rgb, (self.sem(feat) if self.sem is not None and semantics else None)

    def forward(self, x: Tensor, d: Tensor, aud: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        sigma, feat = self.density(x, aud)
        return (sigma, *self.colour(feat, d, aud))


class HashField(nn.Module):
    """Hash grid + small MLPs (Instant-NGP style), audio-conditioned, with a semantic head."""

    def __init__(self, aabb: Tensor, aud_dim: int, n_classes: int, n_levels: int = 16, n_features: int = 2,
                 log2_table: int = 17, base_res: int = 16, max_res: int = 1024, width: int = 64,
                 geo_dim: int = 15, pe_dirs: int = 4, density_act: str = "trunc_exp", density_bias: float = -1.0,
                 cond_groups: list[int] | None = None, learned_gates: bool = True, eye_region: bool = False,
                 quiet_eyes: bool = False, view_dirs: str = "all"):
        super().__init__()
        self.enc_x = HashGridEncoding(aabb, n_levels, n_features, log2_table, base_res, max_res)
        self.geo_dim = geo_dim
        self.gates = (ConditionGates(self.enc_x.out_dim, cond_groups, learned_gates, eye_region, quiet_eyes)
                      if cond_groups else None)
        self.enc_d = direction_encoding(view_dirs, pe_dirs, eye_region)
        self.dirs_at_eyes = view_dirs == "eyes"
        self.density_act = density_act
        self.density_net = mlp(self.enc_x.out_dim + aud_dim, width, 1 + geo_dim, 1)
        self.color_net = mlp(geo_dim + direction_dim(self.enc_d) + aud_dim, width, 3, 2)
        self.sem = nn.Linear(geo_dim, n_classes) if n_classes > 0 else None
        with torch.no_grad():
            self.density_net[-1].bias[0] = density_bias  # start nearly empty: exp(-1) per unit length
        # fast path on the CPU without gradients: "float32" | "bfloat16" (products in AMX tiles) runs the MLPs through
        # the compiled kernel, "" through the torch layers (Pipeline.use_cpu_kernels: cpu_kernels, cpu_mlp_precision)
        self.mlp_kernel = ""

    def _mlp(self, net: nn.Sequential, parts: list[Tensor], aud: Tensor, gates: Tensor | None,
             extra: list[Tensor] = ()) -> Tensor:
        """net(cat(parts + [condition])), the condition as it is or gated per point (_conditioned), with the columns
        of `extra` appended; through the compiled kernel when it applies."""
        if self.mlp_kernel and cpu_kernels.mlp_applies(parts[0]):
            gated = None if gates is None else (self.gates, aud, gates)
            return kernel_mlp(linears(net), parts + ([aud] if gates is None else []), gated, extra,
                              self.mlp_kernel == "bfloat16")
        h = net[1:](self._conditioned(net[0], parts, aud, gates))
        return torch.cat([h, *extra], -1) if extra else h

    def _conditioned(self, layer: nn.Linear, parts: list[Tensor], aud: Tensor, gates: Tensor | None) -> Tensor:
        """layer(cat(parts + [condition])): the condition as it is, or gated per point by the region attention."""
        if gates is None:
            return linear_of_parts(layer, parts + [aud])
        n = sum(p.shape[-1] for p in parts)
        x = parts[0] if len(parts) == 1 else torch.cat(parts, -1)
        return self.gates.add_gated_linear(F.linear(x, layer.weight[:, :n], layer.bias), layer.weight[:, n:], aud,
                                           gates)

    def _geometry(self, x: Tensor, aud: Tensor) -> tuple[Tensor, Tensor]:
        """raw density [N], feature [N,F]: the geometric feature [N,geo_dim], then the region gates when on, then
        the eye weight [N,1] when view directions act at the eyes only."""
        enc = self.enc_x(x)
        d2 = self.gates.eye_distance2(x) if self.dirs_at_eyes else None  # [M,1], shared with the gates
        gates = None if self.gates is None else self.gates(enc, x, d2)
        extra = ([] if gates is None else [gates]) + ([eye_falloff(d2)] if self.dirs_at_eyes else [])
        h = self._mlp(self.density_net, [enc], aud, gates, extra)  # [M, 1 + geo_dim + extra]
        return h[:, 0], h[:, 1:]

    def _semantics_of(self, feat: Tensor) -> Tensor | None:  # [N, C] logits from the feature's geometric part
        return None if self.sem is None else self.sem(feat[:, :self.geo_dim])

    def semantics(self, x: Tensor, aud: Tensor) -> Tensor | None:  # [N, C] logits, colour branch skipped
        return self._semantics_of(self._geometry(x, aud)[1])

    def density_and_semantics(self, x: Tensor, aud: Tensor) -> tuple[Tensor, Tensor | None]:  # [N], [N, C]
        sigma, feat = self.density(x, aud)
        return sigma, self._semantics_of(feat)

    def density(self, x: Tensor, aud: Tensor) -> tuple[Tensor, Tensor]:
        """x [N,3], aud [N,A] -> sigma [N], feature [N,F] (what `colour` needs)."""
        raw, feat = self._geometry(x, aud)
        return density_activation(raw, self.density_act), feat

    def colour(self, feat: Tensor, d: Tensor, aud: Tensor, semantics: bool = True) -> tuple[Tensor, Tensor | None]:
        """feature [N,F] from `density`, unit directions d [N,3], aud [N,A] -> rgb [N,3], logits [N,C] | None (also
        without `semantics`)."""
        geo, rest = feat[:, :self.geo_dim], feat[:, self.geo_dim:]
        gates = None if self.gates is None else rest[:, :self.gates.n_groups]
        weight = rest[:, -1:] if self.dirs_at_eyes else None  # view directions seen at the eyes only
        h = self._mlp(self.color_net, [geo, *directions(self.enc_d, d, weight)], aud, gates)
        return torch.sigmoid(h), (self._semantics_of(feat) if semantics else None)

    def forward(self, x: Tensor, d: Tensor, aud: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        sigma, feat = self.density(x, aud)
        return (sigma, *self.colour(feat, d, aud))
