"""Input encodings in pure torch (same code on CPU and CUDA).

- `FrequencyEncoding`: NeRF's positional encoding [x, sin(2^k x), cos(2^k x)] (AD-NeRF: 10 freqs for points,
  4 for directions).
- `HashGridEncoding`: Instant-NGP's multiresolution hash grid. All levels are looked up in one batched gather:
  one table [L, T, F] viewed flat as [L*T, F], corner indices [N, L, 8]. Coarse levels whose grid fits in the table
  are indexed densely (coordinates bit-packed, no collisions); finer ones are hashed with Instant-NGP's primes.
  Index arithmetic: per-axis terms in int64, masked, then the 8-corner xor in int32.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

PRIMES = (1, 2654435761, 805459861)  # Instant-NGP's spatial hash primes (x, y, z)


class FrequencyEncoding(nn.Module):
    """x [N, D] -> [N, D * (include_input + 2 * n_freqs)] with bands 2^0 .. 2^(n_freqs-1) (NeRF, no pi)."""

    def __init__(self, n_freqs: int, include_input: bool = True, in_dim: int = 3):
        super().__init__()
        self.n_freqs, self.include_input, self.in_dim = n_freqs, include_input, in_dim
        self.register_buffer("bands", 2.0 ** torch.arange(n_freqs, dtype=torch.float32), persistent=False)
        self.out_dim = in_dim * (int(include_input) + 2 * n_freqs)

    def forward(self, x: Tensor) -> Tensor:  # [N, D] -> [N, out_dim]
        xb = (x[..., None, :] * self.bands[:, None]).flatten(-2)  # [N, n_freqs*D]: band-major
        parts = [x] if self.include_input else []
        parts += [torch.sin(xb), torch.cos(xb)]
        return torch.cat(parts, -1)


def level_resolutions(n_levels: int, base_res: int, max_res: int) -> list[int]:
    """Instant-NGP's geometric progression of grid resolutions, base_res .. max_res."""
    if n_levels == 1:
        return [base_res]
    b = math.exp((math.log(max_res) - math.log(base_res)) / (n_levels - 1))
    return [int(math.floor(base_res * b ** level + 1e-6)) for level in range(n_levels)]


class HashGridEncoding(nn.Module):
    """Multiresolution hash grid over an axis-aligned box: x [N, 3] -> features [N, n_levels * n_features].

    Points outside `aabb` are clamped onto its surface.
    """

    def __init__(self, aabb: Tensor, n_levels: int = 16, n_features: int = 2, log2_table: int = 19,
                 base_res: int = 16, max_res: int = 2048, init_scale: float = 1e-4):
        super().__init__()
        aabb = torch.as_tensor(aabb, dtype=torch.float32).reshape(6)
        self.register_buffer("aabb", aabb)
        self.n_levels, self.n_features, self.table_size = n_levels, n_features, 2 ** log2_table
        self.out_dim = n_levels * n_features
        if n_levels * self.table_size >= 2 ** 31:
            raise ValueError(f"hash grid too large: {n_levels} levels x 2^{log2_table} rows (int32 indices)")
        res = level_resolutions(n_levels, base_res, max_res)
        # Dense levels pack (x, y, z) into disjoint bit fields, so that x | y<<b | z<<2b equals the xor of the
        # per-axis terms: one xor path serves dense and hashed levels alike.
        bits = [max(r, 1).bit_length() for r in res]  # bits for coordinates 0 .. r
        dense = [3 * b <= log2_table for b in bits]
        self.resolutions, self.dense_levels = res, dense
        mult = [[1, 1 << b, 1 << (2 * b)] if d else list(PRIMES) for b, d in zip(bits, dense)]
        self.register_buffer("res_f", torch.tensor(res, dtype=torch.float32), persistent=False)  # [L]
        self.register_buffer("mult", torch.tensor(mult, dtype=torch.int64), persistent=False)  # [L, 3]
        offset = (torch.arange(n_levels, dtype=torch.int32) * self.table_size)[:, None]  # [L, 1]
        self.register_buffer("level_offset", offset, persistent=False)
        self.table = nn.Parameter(torch.empty(n_levels, self.table_size, n_features).uniform_(-init_scale,
                                                                                              init_scale))

    def normalise(self, x: Tensor) -> Tensor:  # [N, 3] world -> [N, 3] in [0, 1]
        lo, hi = self.aabb[:3], self.aabb[3:]
        return ((x - lo) / (hi - lo)).clamp(0.0, 1.0)

    def corner_indices(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Flat table rows [N, L, 8] and trilinear weights [N, L, 8] of each point's 8 cell corners.

        Corner k has offset bits (k>>2 & 1, k>>1 & 1, k & 1) along (x, y, z).
        """
        pos = self.normalise(x)[:, None, :] * self.res_f[:, None]  # [N, L, 3]
        cell = pos.floor().clamp_max(self.res_f[:, None] - 1)  # keep corner + 1 inside the grid
        frac = pos - cell  # [N, L, 3] in [0, 1]
        a0 = cell.long() * self.mult  # [N, L, 3] lower corner's per-axis term (int64: exact products)
        t = torch.stack([a0, a0 + self.mult], -1)  # [N, L, 3, 2] lower and upper corner per axis
        # mask to the table size before combining ((a^b^c) & m == (a&m)^(b&m)^(c&m)), then work in int32
        t = t.bitwise_and_(self.table_size - 1).to(torch.int32)
        t[:, :, 0] |= self.level_offset  # level l's rows start at l*T (bits above the mask)
        tx, ty, tz = t[:, :, 0, :, None, None], t[:, :, 1, None, :, None], t[:, :, 2, None, None, :]
        n = x.shape[0]
        idx = (tx ^ ty ^ tz).reshape(n, self.n_levels, 8)  # [N, L, 8] rows of the flat [L*T, F] table
        w = torch.stack([1 - frac, frac], -1)  # [N, L, 3, 2]
        wx, wy, wz = w[:, :, 0, :, None, None], w[:, :, 1, None, :, None], w[:, :, 2, None, None, :]
        weights = (wx * wy * wz).reshape(n, self.n_levels, 8)
        return idx, weights

    def forward(self, x: Tensor) -> Tensor:  # [N, 3] -> [N, L*F]
        idx, weights = self.corner_indices(x)
        n, f = x.shape[0], self.n_features
        flat = self.table.view(-1, f)  # [L*T, F]
        # int64 rows: index_select's backward (scatter-add) is several times faster with them than with int32
        feats = flat.index_select(0, idx.reshape(-1).long()).view(n * self.n_levels, 8, f)
        out = torch.bmm(weights.view(n * self.n_levels, 1, 8), feats)  # trilinear blend [N*L, 1, F]
        return out.view(n, self.out_dim)
