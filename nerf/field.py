"""The unified audio-conditioned field: (x, d, audio code) -> (density, colour, semantic logits).

Backbones:
- `MLPField`: AD-NeRF's FaceNeRF: PE(x) (10 freqs) + audio code -> 8 x 256 ReLU layers (input re-injected
  after layer 4) -> density; a 256-d feature + PE(d) (4 freqs) -> 128 -> rgb; a linear semantic head on the feature.
- `HashField`: hash grid features + audio code -> small MLP -> density and a geometric feature; a linear
  semantic head on the feature; colour MLP on (feature, frequency-encoded direction, audio code) -> rgb.
Density activation `softplus` or `trunc_exp`; rgb through a sigmoid.
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

    def _trunk(self, x: Tensor, aud: Tensor) -> Tensor:  # [N,3],[N,A] -> [N,width]
        inp = torch.cat([self.enc_x(x), aud], -1)
        h = inp
        for i, layer in enumerate(self.layers):
            h = F.relu(layer(h))
            if i == self.skip - 1:
                h = torch.cat([inp, h], -1)
        return h

    def semantics(self, x: Tensor, aud: Tensor) -> Tensor | None:  # [N, C] logits, colour branch skipped
        return None if self.sem is None else self.sem(self.feature(self._trunk(x, aud)))

    def forward(self, x: Tensor, d: Tensor, aud: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        h = self._trunk(x, aud)
        sigma = density_activation(self.sigma(h)[:, 0], self.density_act)
        feat = self.feature(h)
        rgb = torch.sigmoid(self.rgb(F.relu(self.view(torch.cat([feat, self.enc_d(d)], -1)))))
        return sigma, rgb, (self.sem(feat) if self.sem is not None else None)


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
        h = self.density_net(torch.cat([self.enc_x(x), aud], -1))
        return h[:, 0], h[:, 1:]

    def semantics(self, x: Tensor, aud: Tensor) -> Tensor | None:  # [N, C] logits, colour branch skipped
        return None if self.sem is None else self.sem(self._geometry(x, aud)[1])

    def density_and_semantics(self, x: Tensor, aud: Tensor) -> tuple[Tensor, Tensor | None]:  # [N], [N, C]
        raw, geo = self._geometry(x, aud)
        return density_activation(raw, self.density_act), (None if self.sem is None else self.sem(geo))

    def forward(self, x: Tensor, d: Tensor, aud: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        raw, geo = self._geometry(x, aud)
        sigma = density_activation(raw, self.density_act)
        rgb = torch.sigmoid(self.color_net(torch.cat([geo, self.enc_d(d), aud], -1)))
        return sigma, rgb, (self.sem(geo) if self.sem is not None else None)
