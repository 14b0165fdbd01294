// The multiresolution hash-grid lookup of nerf/encodings.py (HashGridEncoding, int32 arithmetic) as one CPU loop
// per point: the same cells, corner rows and trilinear weights, summed in the same order as embedding_bag, so the
// forward equals the pure-torch fast path bit for bit. Built on first use by nerf/cpu_kernels.py
// (torch.utils.cpp_extension); the pure-torch lookup stays the reference and the fallback.
//
// Shapes: x [N, 3] float32 (world), table [L, T, F] float32, aabb [6], res [L] float32, mult [L, 3] int32
// (per-axis multipliers mod T: exact in int32). Output [N, L*F].
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace {

struct Corners {
  int32_t lo[3], hi[3];  // per-axis terms of the lower / upper corner, masked to the table
  float frac[3];         // offset of the point in its cell, per axis
};

// The point's cell at one level, exactly as HashGridEncoding._cells / corner_indices compute it.
inline Corners cell_at(const float* p, float r, const int32_t* m, int32_t mask) {
  Corners c;
  for (int a = 0; a < 3; ++a) {
    const float q = p[a] * r;  // >= 0 (p is clamped to [0, 1]), so truncation is floor, without a libm call
    float lower = static_cast<float>(static_cast<int32_t>(q));
    if (lower > r - 1.f) lower = r - 1.f;
    c.frac[a] = q - lower;
    const int32_t t = static_cast<int32_t>(lower) * m[a];
    c.hi[a] = (t + m[a]) & mask;
    c.lo[a] = t & mask;
  }
  return c;
}

// Corner k = (k>>2, k>>1, k) & 1 along (x, y, z): its row (within the level) and trilinear weight.
inline int32_t corner_row(const Corners& c, int k) {
  return ((k & 4) ? c.hi[0] : c.lo[0]) ^ ((k & 2) ? c.hi[1] : c.lo[1]) ^ ((k & 1) ? c.hi[2] : c.lo[2]);
}

inline float corner_weight(const Corners& c, int k) {
  const float wx = (k & 4) ? c.frac[0] : 1.f - c.frac[0];
  const float wy = (k & 2) ? c.frac[1] : 1.f - c.frac[1];
  const float wz = (k & 1) ? c.frac[2] : 1.f - c.frac[2];
  return wx * wy * wz;
}

// The point normalised to the box and clamped to [0, 1]; inside[a]: the clamp passes the gradient on axis a.
inline void normalise(const float* x, const float* box, float* p, bool* inside) {
  for (int a = 0; a < 3; ++a) {
    const float v = (x[a] - box[a]) / (box[3 + a] - box[a]);
    inside[a] = v >= 0.f && v <= 1.f;
    p[a] = v > 0.f ? (v < 1.f ? v : 1.f) : 0.f;  // NaN -> 0: the cell index stays inside the grid
  }
}

void check(const torch::Tensor& x, const torch::Tensor& table, const torch::Tensor& aabb, const torch::Tensor& res,
           const torch::Tensor& mult) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == torch::kFloat && x.is_contiguous() && x.dim() == 2 &&
              x.size(1) == 3, "hash_grid: x must be a contiguous float32 CPU tensor [N, 3]");
  TORCH_CHECK(table.scalar_type() == torch::kFloat && table.is_contiguous() && table.dim() == 3,
              "hash_grid: table must be a contiguous float32 [L, T, F]");
  TORCH_CHECK(aabb.numel() == 6 && res.numel() == table.size(0) && mult.numel() == 3 * table.size(0) &&
              mult.scalar_type() == torch::kInt && res.scalar_type() == torch::kFloat && aabb.is_contiguous() &&
              res.is_contiguous() && mult.is_contiguous(), "hash_grid: aabb [6], res [L] float32, mult [L, 3] int32");
}

}  // namespace

// The points in blocks of kBlock, each block level by level (one level's table, T * F floats, stays in the cache
// while the block reads it, instead of all L tables per point), with F features per level known at compile time
// (kept in registers). The same sums as point by point: the output is unchanged.
constexpr int64_t kBlock = 256;

template <int F>
void forward_points(const float* px, const float* tb, const float* box, const float* pr, const int32_t* pm,
                    float* po, int64_t n, int64_t levels, int64_t rows) {
  const int32_t mask = static_cast<int32_t>(rows - 1);
  at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
    float p[kBlock][3];
    bool inside[3];
    for (int64_t b0 = begin; b0 < end; b0 += kBlock) {
      const int64_t b1 = std::min(end, b0 + kBlock);
      for (int64_t i = b0; i < b1; ++i) normalise(px + 3 * i, box, p[i - b0], inside);
      for (int64_t l = 0; l < levels; ++l) {
        const float* level = tb + l * rows * F;
        for (int64_t i = b0; i < b1; ++i) {
          const Corners c = cell_at(p[i - b0], pr[l], pm + 3 * l, mask);
          float acc[F] = {};
          for (int k = 0; k < 8; ++k) {
            const float w = corner_weight(c, k);
            const float* row = level + static_cast<int64_t>(corner_row(c, k)) * F;
            for (int f = 0; f < F; ++f) acc[f] += w * row[f];
          }
          float* o = po + (i * levels + l) * F;
          for (int f = 0; f < F; ++f) o[f] = acc[f];
        }
      }
    }
  });
}

torch::Tensor hash_grid_forward(torch::Tensor x, torch::Tensor table, torch::Tensor aabb, torch::Tensor res,
                                torch::Tensor mult) {
  check(x, table, aabb, res, mult);
  const int64_t n = x.size(0), levels = table.size(0), rows = table.size(1), feats = table.size(2);
  auto out = torch::empty({n, levels * feats}, x.options());
  const float *px = x.data_ptr<float>(), *tb = table.data_ptr<float>(), *box = aabb.data_ptr<float>();
  const float* pr = res.data_ptr<float>();
  const int32_t* pm = mult.data_ptr<int32_t>();
  float* po = out.data_ptr<float>();
  switch (feats) {
    case 1: forward_points<1>(px, tb, box, pr, pm, po, n, levels, rows); break;
    case 2: forward_points<2>(px, tb, box, pr, pm, po, n, levels, rows); break;
    case 4: forward_points<4>(px, tb, box, pr, pm, po, n, levels, rows); break;
    case 8: forward_points<8>(px, tb, box, pr, pm, po, n, levels, rows); break;
    default: TORCH_CHECK(false, "hash_grid: features per level must be 1, 2, 4 or 8");
  }
  return out;
}

// Gradients of the forward: the table's (dense [L, T, F], each level accumulated by one thread, so no two threads
// write the same row) and, if want_x, the points' [N, 3] (zero on axes where the point was clamped to the box).
std::vector<torch::Tensor> hash_grid_backward(torch::Tensor grad_out, torch::Tensor x, torch::Tensor table,
                                              torch::Tensor aabb, torch::Tensor res, torch::Tensor mult,
                                              bool want_x) {
  check(x, table, aabb, res, mult);
  grad_out = grad_out.contiguous();
  const int64_t n = x.size(0), levels = table.size(0), rows = table.size(1), feats = table.size(2);
  TORCH_CHECK(grad_out.scalar_type() == torch::kFloat && grad_out.numel() == n * levels * feats,
              "hash_grid: grad_out must be float32 [N, L*F]");
  auto grad_table = torch::zeros_like(table);
  auto grad_x = want_x ? torch::zeros_like(x) : torch::Tensor();
  const float *px = x.data_ptr<float>(), *tb = table.data_ptr<float>(), *box = aabb.data_ptr<float>();
  const float *pr = res.data_ptr<float>(), *pg = grad_out.data_ptr<float>();
  const int32_t* pm = mult.data_ptr<int32_t>();
  float* pgt = grad_table.data_ptr<float>();
  const int32_t mask = static_cast<int32_t>(rows - 1);
  at::parallel_for(0, levels, 1, [&](int64_t lbegin, int64_t lend) {
    for (int64_t l = lbegin; l < lend; ++l) {
      float* level = pgt + l * rows * feats;
      for (int64_t i = 0; i < n; ++i) {
        float p[3];
        bool inside[3];
        normalise(px + 3 * i, box, p, inside);
        const Corners c = cell_at(p, pr[l], pm + 3 * l, mask);
        const float* g = pg + (i * levels + l) * feats;
        for (int k = 0; k < 8; ++k) {
          const float w = corner_weight(c, k);
          float* row = level + static_cast<int64_t>(corner_row(c, k)) * feats;
          for (int64_t f = 0; f < feats; ++f) row[f] += w * g[f];
        }
      }
    }
  });
  if (want_x) {
    float* pgx = grad_x.data_ptr<float>();
    at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        float p[3];
        bool inside[3];
        normalise(px + 3 * i, box, p, inside);
        float d[3] = {0.f, 0.f, 0.f};  // d loss / d normalised position
        for (int64_t l = 0; l < levels; ++l) {
          const Corners c = cell_at(p, pr[l], pm + 3 * l, mask);
          const float* level = tb + l * rows * feats;
          const float* g = pg + (i * levels + l) * feats;
          const float w0[3] = {1.f - c.frac[0], 1.f - c.frac[1], 1.f - c.frac[2]};
          for (int k = 0; k < 8; ++k) {
            const float* row = level + static_cast<int64_t>(corner_row(c, k)) * feats;
            float dot = 0.f;  // <table row, grad_out>
            for (int64_t f = 0; f < feats; ++f) dot += row[f] * g[f];
            const float wx = (k & 4) ? c.frac[0] : w0[0], wy = (k & 2) ? c.frac[1] : w0[1];
            const float wz = (k & 1) ? c.frac[2] : w0[2];
            const float sx = (k & 4) ? 1.f : -1.f, sy = (k & 2) ? 1.f : -1.f, sz = (k & 1) ? 1.f : -1.f;
            d[0] += pr[l] * dot * sx * wy * wz;
            d[1] += pr[l] * dot * wx * sy * wz;
            d[2] += pr[l] * dot * wx * wy * sz;
          }
        }
        for (int a = 0; a < 3; ++a) pgx[3 * i + a] = inside[a] ? d[a] / (box[3 + a] - box[a]) : 0.f;
      }
    });
  }
  return {grad_table, grad_x};
}
