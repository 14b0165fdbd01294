"""The unified audio-conditioned field: (x, d, audio code) -> (density, colour, semantic logits).

Backbones:
- `MLPField`: AD-NeRF's FaceNeRF: PE(x) (10 freqs) + audio code -> 8 x 256 ReLU layers (input re-injected
  after layer 4) -> density; a 256-d feature + PE(d) (4 freqs) -> 128 -> rgb; a linear semantic head on the feature.
- `HashField`: hash grid features + audio code -> small MLP -> density and a geometric feature; a linear
  semantic head on the feature; colour MLP on (feature, frequency-encoded direction, audio code) -> rgb.
Density activation `softplus` or `trunc_exp`; rgb through a sigmoid.
Both offer the two halves separately: `density(x, aud) -> (sigma, feature)` and `colour(feature, d, aud) -> (rgb,
logits)`, so that the fast renderer (nerf/marching.py) computes colour only where a sample's weight matters.
The audio code `aud` is [N,A], or [1,A] when all N points share it (a rendered frame): the hash field's first
layers then project it once instead of once per point.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


def density_activation(raw: Tensor, kind: str) -> Tensor:
    if kind == "softplus":
        return F.softplus(raw)
    if kind == "trunc_exp":
        return _TruncExp.apply(raw)
    if kind == "relu":
        return F.relu(raw)
    raise ValueError(f"unknown density activation {kind!r} (softplus | trunc_exp | relu)")


def linear_of_parts(layer: nn.Linear, parts: list[Tensor]) -> Tensor:
    """layer(torch.cat(parts, -1)) where a part may be one row [1,k] shared by all M points (e.g. a frame's audio
    code): its product with its columns of the weight is folded into the bias once, not computed per point."""
    if all(p.shape[0] != 1 for p in parts) or all(p.shape[0] == 1 for p in parts):
        return layer(torch.cat(parts, -1))
    bias, cols, per_point, start = layer.bias, [], [], 0
    for p in parts:
        w = layer.weight[:, start:start + p.shape[-1]]
        start += p.shape[-1]
        if p.shape[0] == 1:
            bias = bias + F.linear(p[0], w)
        else:
            cols.append(w)
            per_point.append(p)
    return F.linear(torch.cat(per_point, -1), torch.cat(cols, 1), bias)


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
                 pe_dirs: int = 4, density_act: str = "relu", skip: int | None = None):
        super().__init__()
        self.enc_x, self.enc_d = FrequencyEncoding(pe_pts), FrequencyEncoding(pe_dirs)
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
        self.view = nn.Linear(width + self.enc_d.out_dim, width // 2)
        self.rgb = nn.Linear(width // 2, 3)
        self.sem = nn.Linear(width, n_classes) if n_classes > 0 else None

    def _trunk(self, x: Tensor, aud: Tensor) -> Tensor:  # [N,3],[N,A] or [1,A] -> [N,width]
        inp = torch.cat([self.enc_x(x), aud.expand(x.shape[0], -1)], -1)
        h = inp
        for i, layer in enumerate(self.layers):
            h = F.relu(layer(h))
            if i == self.skip - 1:
                h = torch.cat([inp, h], -1)
        return h

    def semantics(self, x: Tensor, aud: Tensor) -> Tensor | None:  # [N, C] logits, colour branch skipped
        return None if self.sem is None else self.sem(self.feature(self._trunk(x, aud)))

    def density(self, x: Tensor, aud: Tensor) -> tuple[Tensor, Tensor]:
        """x [N,3], aud [N,A] -> sigma [N], feature [N,width] (what `colour` needs)."""
        h = self._trunk(x, aud)
        return density_activation(self.sigma(h)[:, 0], self.density_act), self.feature(h)

    def colour(self, feat: Tensor, d: Tensor, aud: Tensor) -> tuple[Tensor, Tensor | None]:
        """feature [N,width], unit directions d [N,3] -> rgb [N,3], logits [N,C] | None."""
        rgb = torch.sigmoid(self.rgb(F.relu(self.view(torch.cat([feat, self.enc_d(d)], -1)))))
        return rgb, (self.sem(feat) if self.sem is not None else None)

    def forward(self, x: Tensor, d: Tensor, aud: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        sigma, feat = self.density(x, aud)
        return (sigma, *self.colour(feat, d, aud))


class HashField(nn.Module):
    """Hash grid + small MLPs (Instant-NGP style), audio-conditioned, with a semantic head."""

    def __init__(self, aabb: Tensor, aud_dim: int, n_classes: int, n_levels: int = 16, n_features: int = 2,
                 log2_table: int = 17, base_res: int = 16, max_res: int = 1024, width: int = 64,
                 geo_dim: int = 15, pe_dirs: int = 4, density_act: str = "trunc_exp", density_bias: float = -1.0):
        super().__init__()
        self.enc_x = HashGridEncoding(aabb, n_levels, n_features, log2_table, base_res, max_res)
        self.enc_d = FrequencyEncoding(pe_dirs)
        self.density_act = density_act
        self.density_net = mlp(self.enc_x.out_dim + aud_dim, width, 1 + geo_dim, 1)
        self.color_net = mlp(geo_dim + self.enc_d.out_dim + aud_dim, width, 3, 2)
        self.sem = nn.Linear(geo_dim, n_classes) if n_classes > 0 else None
        with torch.no_grad():
            self.density_net[-1].bias[0] = density_bias  # start nearly empty: exp(-1) per unit length

    def _geometry(self, x: Tensor, aud: Tensor) -> tuple[Tensor, Tensor]:  # raw density [N], feature [N,G]
        h = self.density_net[1:](linear_of_parts(self.density_net[0], [self.enc_x(x), aud]))
        return h[:, 0], h[:, 1:]

    def semantics(self, x: Tensor, aud: Tensor) -> Tensor | None:  # [N, C] logits, colour branch skipped
        return None if self.sem is None else self.sem(self._geometry(x, aud)[1])

    def density_and_semantics(self, x: Tensor, aud: Tensor) -> tuple[Tensor, Tensor | None]:  # [N], [N, C]
        sigma, geo = self.density(x, aud)
        return sigma, (None if self.sem is None else self.sem(geo))

    def density(self, x: Tensor, aud: Tensor) -> tuple[Tensor, Tensor]:
        """x [N,3], aud [N,A] -> sigma [N], geometric feature [N,G] (what `colour` needs)."""
        raw, geo = self._geometry(x, aud)
        return density_activation(raw, self.density_act), geo

    def colour(self, geo: Tensor, d: Tensor, aud: Tensor) -> tuple[Tensor, Tensor | None]:
        """geometric feature [N,G], unit directions d [N,3], aud [N,A] -> rgb [N,3], logits [N,C] | None."""
        h = linear_of_parts(self.color_net[0], [geo, self.enc_d(d), aud])
        return torch.sigmoid(self.color_net[1:](h)), (self.sem(geo) if self.sem is not None else None)

    def forward(self, x: Tensor, d: Tensor, aud: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        sigma, geo = self.density(x, aud)
        return (sigma, *self.colour(geo, d, aud))
