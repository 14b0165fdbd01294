"""Input encodings in pure torch (same code on CPU and CUDA).

- `FrequencyEncoding`: NeRF's positional encoding [x, sin(2^k x), cos(2^k x)] (AD-NeRF: 10 freqs for points,
  4 for directions).
- `HashGridEncoding`: Instant-NGP's multiresolution hash grid. All levels are looked up in one batched gather:
  one table [L, T, F] viewed flat as [L*T, F], corner indices [N, L, 8]. Coarse levels whose grid fits in the table
  are indexed densely (coordinates bit-packed, no collisions); finer ones are hashed with Instant-NGP's primes.
  Index arithmetic in int32: the per-axis primes are reduced modulo the table size first ((c * p) mod T =
  (c * (p mod T)) mod T for a power-of-two T), so every product is exact in int32 (grids too fine for that keep int64).
  Without gradients the 8 corners are gathered and blended by one `embedding_bag` (2-3x faster on the CPU than
  index_select + bmm, whose backward is the faster one when training); `corner_indices_reference` keeps the
  original int64 arithmetic as the reference the tests compare against.
- On the CPU the fast path can use a compiled kernel of the same lookup (`kernel`, nerf/cpu_kernels.py: ~6x the
  forward, ~5x with gradients).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerf import cpu_kernels

PRIMES = (1, 2654435761, 805459861)  # Instant-NGP's spatial hash primes (x, y, z)


class FrequencyEncoding(nn.Module):
    """x [N, D] -> [N, D * (include_input + 2 * n_freqs)] with bands 2^0 .. 2^(n_freqs-1) (NeRF, no pi)."""

    def __init__(self, n_freqs: int, include_input: bool = True, in_dim: int = 3):
        super().__init__()
        self.n_freqs, self.include_input, self.in_dim = n_freqs, include_input, in_dim
        self.register_buffer("bands", 2.0 ** torch.arange(n_freqs, dtype=torch.float32), persistent=False)
        # x @ scale == x times each band, band-major: products by powers of two and sums with zeros are exact
        scale = torch.zeros(in_dim, n_freqs, in_dim)
        scale[torch.arange(in_dim), :, torch.arange(in_dim)] = self.bands
        self.register_buffer("scale", scale.view(in_dim, n_freqs * in_dim), persistent=False)
        self.out_dim = in_dim * (int(include_input) + 2 * n_freqs)

    def parts(self, x: Tensor) -> list[Tensor]:
        """The encoding's column blocks, not concatenated: [x] (include_input), sin [N, n_freqs*D], cos [N, n_freqs*D]."""
        if x.device.type == "cpu" and x.dim() == 2 and x.dtype == self.scale.dtype:  # one product, ~10x faster
            xb = x @ self.scale  # than the broadcast (loops of D=3); CUDA keeps it (TF32 could round a product)
        else:
            xb = (x[..., None, :] * self.bands[:, None]).flatten(-2)  # [N, n_freqs*D]: band-major
        return ([x] if self.include_input else []) + [torch.sin(xb), torch.cos(xb)]

    def forward(self, x: Tensor) -> Tensor:  # [N, D] -> [N, out_dim]
        return torch.cat(self.parts(x), -1)


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
        # the same multipliers mod T: c * (p mod T) < 2^31 for c <= res, so int32 products are exact (else int64)
        self.exact32 = max(res) * self.table_size < 2 ** 31
        self.register_buffer("mult32", (self.mult & (self.table_size - 1)).to(torch.int32), persistent=False)
        offset = (torch.arange(n_levels, dtype=torch.int32) * self.table_size)[:, None]  # [L, 1]
        self.register_buffer("level_offset", offset, persistent=False)
        self.fast = True  # False: the original arithmetic and gather (render_path = reference)
        self.kernel = False  # fast path on the CPU: the compiled lookup (nerf/cpu_kernels.py; Pipeline sets it)
        self.table = nn.Parameter(torch.empty(n_levels, self.table_size, n_features).uniform_(-init_scale,
                                                                                              init_scale))

    def normalise(self, x: Tensor) -> Tensor:  # [N, 3] world -> [N, 3] in [0, 1]
        lo, hi = self.aabb[:3], self.aabb[3:]
        return ((x - lo) / (hi - lo)).clamp(0.0, 1.0)

    def _cells(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [N, 3] -> each level's lower corner cell [N, L, 3] (float, integral) and the offset in it [N, L, 3]."""
        pos = self.normalise(x)[:, None, :] * self.res_f[:, None]  # [N, L, 3]
        cell = pos.floor().clamp_max(self.res_f[:, None] - 1)  # keep corner + 1 inside the grid
        return cell, pos - cell

    def _corners(self, t: Tensor, frac: Tensor) -> tuple[Tensor, Tensor]:
        """(reference) Per-axis masked terms t [N, L, 3, 2] (int32, lower/upper) -> rows [N, L, 8], weights [N, L, 8].

        Corner k has offset bits (k>>2 & 1, k>>1 & 1, k & 1) along (x, y, z).
        """
        t[:, :, 0] |= self.level_offset  # level l's rows start at l*T (bits above the mask)
        tx, ty, tz = t[:, :, 0, :, None, None], t[:, :, 1, None, :, None], t[:, :, 2, None, None, :]
        n = t.shape[0]
        idx = (tx ^ ty ^ tz).reshape(n, self.n_levels, 8)  # [N, L, 8] rows of the flat [L*T, F] table
        w = torch.stack([1 - frac, frac], -1)  # [N, L, 3, 2]
        wx, wy, wz = w[:, :, 0, :, None, None], w[:, :, 1, None, :, None], w[:, :, 2, None, None, :]
        return idx, (wx * wy * wz).reshape(n, self.n_levels, 8)

    def corner_indices(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Flat table rows [N, L, 8] (int32) and trilinear weights [N, L, 8] of each point's 8 cell corners.

        The same numbers as corner_indices_reference, ~3x faster on the CPU: int32 products, and the 8 corners
        built from contiguous [N, L] terms (4 xy pairs, then z) instead of broadcasting over [N, L, 2, 2, 2].
        """
        if not self.exact32:
            return self.corner_indices_reference(x)
        cell, frac = self._cells(x)
        mask = self.table_size - 1
        lo = cell.to(torch.int32) * self.mult32  # [N, L, 3] lower corner's per-axis term, exact (see mult32)
        hi = ((lo + self.mult32) & mask).unbind(-1)  # upper corner's, per axis [N, L]
        lo = (lo & mask).unbind(-1)
        x0, x1 = lo[0] | self.level_offset.view(1, -1), hi[0] | self.level_offset.view(1, -1)  # rows from l*T
        xy = (x0 ^ lo[1], x0 ^ hi[1], x1 ^ lo[1], x1 ^ hi[1])
        idx = torch.stack([c ^ z for c in xy for z in (lo[2], hi[2])], -1)  # [N, L, 8], corner k = (k>>2, k>>1, k)&1
        f = frac.unbind(-1)
        wx, wy, wz = (1 - f[0], f[0]), (1 - f[1], f[1]), (1 - f[2], f[2])
        wxy = (wx[0] * wy[0], wx[0] * wy[1], wx[1] * wy[0], wx[1] * wy[1])
        return idx, torch.stack([c * z for c in wxy for z in wz], -1)

    def corner_indices_reference(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """corner_indices with the per-axis products in int64 and the full primes (the original arithmetic)."""
        cell, frac = self._cells(x)
        a0 = cell.long() * self.mult  # [N, L, 3]
        t = torch.stack([a0, a0 + self.mult], -1)  # [N, L, 3, 2] lower and upper corner per axis
        # mask to the table size before combining ((a^b^c) & m == (a&m)^(b&m)^(c&m)), then work in int32
        return self._corners(t.bitwise_and_(self.table_size - 1).to(torch.int32), frac)

    def forward(self, x: Tensor) -> Tensor:  # [N, 3] -> [N, L*F]
        if self.fast and self.kernel and self.exact32 and x.device.type == "cpu" and self.table.dtype == torch.float32:
            return cpu_kernels.lookup(x, self.table, self.aabb, self.res_f, self.mult32)
        idx, weights = self.corner_indices(x) if self.fast else self.corner_indices_reference(x)
        n, f = x.shape[0], self.n_features
        flat = self.table.view(-1, f)  # [L*T, F]
        if self.fast and (not torch.is_grad_enabled() or not self.table.requires_grad):
            # one fused gather-and-blend; its backward is slow on the CPU, so only without gradients
            out = F.embedding_bag(idx.view(-1, 8), flat, per_sample_weights=weights.view(-1, 8), mode="sum")
            return out.view(n, self.out_dim)
        # int64 rows: index_select's backward (scatter-add) is several times faster with them than with int32
        feats = flat.index_select(0, idx.reshape(-1).long()).view(n * self.n_levels, 8, f)
        out = torch.bmm(weights.view(n * self.n_levels, 1, 8), feats)  # trilinear blend [N*L, 1, F]
        return out.view(n, self.out_dim)
