"""Frequency encoding values; hash grid parity with a naive per-level, per-corner reference; gradients."""
import itertools
import math

import pytest
import torch

from nerf.encodings import PRIMES, FrequencyEncoding, HashGridEncoding, level_resolutions


def test_frequency_encoding_values():
    enc = FrequencyEncoding(3, include_input=True)
    x = torch.tensor([[0.1, -0.2, 0.3]])
    y = enc(x)
    assert y.shape == (1, 3 * (1 + 2 * 3)) and enc.out_dim == 21
    assert torch.allclose(y[0, :3], x[0])
    expect_sin = torch.cat([torch.sin(x[0] * 2.0 ** k) for k in range(3)])
    expect_cos = torch.cat([torch.cos(x[0] * 2.0 ** k) for k in range(3)])
    assert torch.allclose(y[0, 3:12], expect_sin) and torch.allclose(y[0, 12:], expect_cos)
    assert FrequencyEncoding(4, include_input=False)(torch.zeros(5, 3)).shape == (5, 24)


def naive_hash(enc: HashGridEncoding, x: torch.Tensor) -> torch.Tensor:
    """Reference: loop over levels and the 8 corners, Instant-NGP's index definition, float64."""
    lo, hi = enc.aabb[:3].double(), enc.aabb[3:].double()
    p = ((x.double() - lo) / (hi - lo)).clamp(0, 1)
    table = enc.table.detach().double()
    out = []
    for level, res in enumerate(enc.resolutions):
        pos = p * res
        cell = pos.floor().clamp(max=res - 1)
        frac = pos - cell
        cell = cell.long()
        bits = res.bit_length()
        acc = torch.zeros(x.shape[0], enc.n_features, dtype=torch.float64)
        for corner in itertools.product((0, 1), repeat=3):
            c = cell + torch.tensor(corner)
            if 3 * bits <= int(math.log2(enc.table_size)):
                idx = c[:, 0] + c[:, 1] * 2 ** bits + c[:, 2] * 2 ** (2 * bits)
            else:
                idx = (c[:, 0] * PRIMES[0]) ^ (c[:, 1] * PRIMES[1]) ^ (c[:, 2] * PRIMES[2])
            idx = idx % enc.table_size
            w = torch.ones(x.shape[0], dtype=torch.float64)
            for axis, bit in enumerate(corner):
                w = w * (frac[:, axis] if bit else 1 - frac[:, axis])
            acc += w[:, None] * table[level, idx]
        out.append(acc)
    return torch.cat(out, 1)


def test_hash_grid_matches_naive_reference():
    torch.manual_seed(0)
    aabb = torch.tensor([-0.3, -0.2, -0.1, 0.3, 0.4, 0.5])
    enc = HashGridEncoding(aabb, n_levels=6, n_features=2, log2_table=12, base_res=4, max_res=200, init_scale=1.0)
    assert any(enc.dense_levels) and not all(enc.dense_levels)  # both index paths exercised
    x = torch.rand(500, 3) * 0.8 - 0.25  # some points outside the box: clamped
    x[0] = aabb[3:]  # the far corner exactly
    got = enc(x)
    assert got.shape == (500, 12)
    assert torch.allclose(got.double(), naive_hash(enc, x), atol=2e-4)  # float32 positions


def test_hash_grid_is_continuous_and_trains():
    torch.manual_seed(1)
    enc = HashGridEncoding(torch.tensor([0.0, 0, 0, 1, 1, 1]), n_levels=4, n_features=2, log2_table=10,
                           base_res=4, max_res=64, init_scale=1.0)
    x = torch.rand(64, 3)
    d = enc(x + 1e-5) - enc(x)
    assert d.abs().max() < 1e-2  # trilinear: no jumps across tiny moves
    target = torch.randn(64, 8)
    opt = torch.optim.Adam(enc.parameters(), lr=0.05)
    first = None
    for _ in range(60):
        loss = ((enc(x) - target) ** 2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert enc.table.grad is not None and enc.table.grad.abs().sum() > 0
    assert loss.item() < 0.1 * first


def test_resolutions_and_size_limit():
    enc = HashGridEncoding(torch.tensor([0.0, 0, 0, 1, 1, 1]), n_levels=3, log2_table=10, base_res=2, max_res=8)
    assert enc.resolutions == level_resolutions(3, 2, 8) == [2, 4, 8]
    with pytest.raises(ValueError, match="too large"):
        HashGridEncoding(torch.zeros(6), n_levels=16, log2_table=27)


def test_int32_indices_equal_the_int64_reference():
    torch.manual_seed(2)
    aabb = torch.tensor([-1.0, -1, -1, 1, 1, 1])
    enc = HashGridEncoding(aabb, n_levels=8, n_features=2, log2_table=19, base_res=16, max_res=2048)
    assert enc.exact32 and not all(enc.dense_levels)
    x = torch.rand(4000, 3) * 2.2 - 1.1
    x[0], x[1] = aabb[3:], aabb[:3]
    idx, w = enc.corner_indices(x)
    ref_idx, ref_w = enc.corner_indices_reference(x)
    assert torch.equal(idx, ref_idx) and torch.equal(w, ref_w)
    too_fine = HashGridEncoding(aabb, n_levels=2, log2_table=22, base_res=512, max_res=4096)
    assert not too_fine.exact32  # falls back to int64
    assert torch.equal(too_fine.corner_indices(x)[0], too_fine.corner_indices_reference(x)[0])


def test_fused_inference_gather_matches_the_training_path():
    torch.manual_seed(3)
    enc = HashGridEncoding(torch.tensor([0.0, 0, 0, 1, 1, 1]), n_levels=6, n_features=2, log2_table=12,
                           base_res=4, max_res=300, init_scale=1.0)
    x = torch.rand(3000, 3)
    with_grad = enc(x)  # index_select + bmm (differentiable)
    assert with_grad.requires_grad
    with torch.no_grad():
        fused = enc(x)  # embedding_bag
    assert torch.allclose(fused, with_grad, atol=1e-6)


@pytest.mark.parametrize("n_freqs", [4, 10])
def test_frequency_encoding_product_equals_the_broadcast(n_freqs):
    """On the CPU the bands are applied as one product with an exact 0 / 2^k matrix: bit for bit the broadcast."""
    enc = FrequencyEncoding(n_freqs)
    x = torch.randn(5000, 3) * 3
    broadcast = (x[..., None, :] * enc.bands[:, None]).flatten(-2)
    parts = enc.parts(x)
    assert torch.equal(parts[1], torch.sin(broadcast)) and torch.equal(parts[2], torch.cos(broadcast))
    assert torch.equal(enc(x), torch.cat([x, torch.sin(broadcast), torch.cos(broadcast)], -1))
