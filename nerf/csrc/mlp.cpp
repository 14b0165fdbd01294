// Inference of a small ReLU MLP (the field's and the deformation's: widths <= a few hundred) on the CPU, one tile of
// points at a time through every layer, so that no [M, width] activation is ever written to memory (torch's
// layer-by-layer path writes and re-reads each one and copies the bias into every output). Built with
// nerf/csrc/hash_grid.cpp by nerf/cpu_kernels.py; the torch modules stay the reference and the fallback.
//
// mlp_forward(xs: input parts [M, k_i] float32 (any row stride; read as their concatenation [M, K0], which is never
// built), weights: L tensors [K_l, P_l] (W^T, columns zero-padded to P_l, a multiple of
// 16), biases: L tensors [P_l] (zero-padded), outs: L real widths, extra, isa) -> [M, outs[L-1] + extra]: ReLU
// after every layer but the last; the `extra` last columns are left for the caller to fill (no copy of the output
// to append to it). The padded columns compute zeros (zero weights and bias), so the next layer may read them.
// isa: -1 the best this CPU has, 0 plain C++ (the tests' reference for the tiling), 2 AVX-512, 3 bfloat16 products
// in AMX tiles (nerf/csrc/mlp_amx.cpp: not float32's result, within ~4e-3 of it); chosen at run time,
// so one build serves any x86-64 CPU. (An AVX2 variant, 2 points x 4 vectors, was slower than torch's products on
// this project's machine: not kept; benchmarks/NOTES.md.) Each output is the bias plus the products summed in input order (k = 0 .. K-1), one
// fused multiply-add each: within float rounding of torch's (tests/test_cpu_kernels.py).
#include "mlp.h"

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define SSP_X86 1
#endif

namespace {

using sspnerf::Layer;
using sspnerf::Part;

// One layer on P points (rows of `in`, stride in_s) -> out (stride out_s), columns [0, pad), ReLU if relu.
void layer_plain(const Layer& l, const float* in, int in_s, float* out, int out_s, int points, bool relu) {
  for (int p = 0; p < points; ++p)
    for (int j = 0; j < l.pad; ++j) {
      float s = l.b[j];
      for (int k = 0; k < l.k; ++k) s += in[p * in_s + k] * l.wt[static_cast<int64_t>(k) * l.pad + j];
      out[p * out_s + j] = relu ? std::max(s, 0.f) : s;
    }
}

#ifdef SSP_X86
// The same with AVX-512: 4 points x NV vectors of 16 output columns in registers (16 accumulators and 4 weight
// vectors of the 32), one block of NV * 16 columns at a time.
constexpr int kLanes = 16, kPoints = 4, kMaxVectors = 4;

template <int NV>
__attribute__((target("avx512f"))) inline void block_avx512(const Layer& l, int col, const float* in, int in_s,
                                                            float* out, int out_s, bool relu) {
  __m512 acc[kPoints][NV], w[NV];
  for (int v = 0; v < NV; ++v) {
    const __m512 b = _mm512_loadu_ps(l.b + col + v * kLanes);
    for (int p = 0; p < kPoints; ++p) acc[p][v] = b;
  }
  for (int k = 0; k < l.k; ++k) {
    const float* wk = l.wt + static_cast<int64_t>(k) * l.pad + col;
    for (int v = 0; v < NV; ++v) w[v] = _mm512_loadu_ps(wk + v * kLanes);
    for (int p = 0; p < kPoints; ++p) {
      const __m512 a = _mm512_set1_ps(in[p * in_s + k]);
      for (int v = 0; v < NV; ++v) acc[p][v] = _mm512_fmadd_ps(a, w[v], acc[p][v]);
    }
  }
  const __m512 zero = _mm512_setzero_ps();
  for (int p = 0; p < kPoints; ++p)
    for (int v = 0; v < NV; ++v)
      _mm512_storeu_ps(out + p * out_s + col + v * kLanes, relu ? _mm512_max_ps(acc[p][v], zero) : acc[p][v]);
}

__attribute__((target("avx512f"))) void layer_avx512(const Layer& l, const float* in, int in_s, float* out,
                                                     int out_s, bool relu) {
  for (int col = 0; col < l.pad; col += kMaxVectors * kLanes) {
    switch (std::min(kMaxVectors, (l.pad - col) / kLanes)) {
      case 4: block_avx512<4>(l, col, in, in_s, out, out_s, relu); break;
      case 3: block_avx512<3>(l, col, in, in_s, out, out_s, relu); break;
      case 2: block_avx512<2>(l, col, in, in_s, out, out_s, relu); break;
      default: block_avx512<1>(l, col, in, in_s, out, out_s, relu); break;
    }
  }
}
#endif

int best_isa() {
#ifdef SSP_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return 2;
#endif
  return 0;
}

// Points [begin, end) through all layers, `tile` points at a time (tile: the instruction set's points per block):
// the tile's input rows are gathered from the parts into a small buffer (zeros past the last point), and its
// activations live in two more. The last layer writes its real columns into `out`.
void run_points(const std::vector<Layer>& layers, const std::vector<Part>& parts, int k0, float* out,
                int64_t out_stride, int64_t begin, int64_t end, int isa) {
  const int tile = isa == 2 ? 4 : 1;  // AVX-512: kPoints
  int widest = 0;
  for (const Layer& l : layers) widest = std::max(widest, l.pad);
  std::vector<float> input(static_cast<size_t>(tile) * k0, 0.f);
  std::vector<float> buf_a(static_cast<size_t>(tile) * widest, 0.f), buf_b(buf_a.size(), 0.f);
  std::vector<float> last(static_cast<size_t>(tile) * layers.back().pad);
  const int n_out = layers.back().n;
  for (int64_t p0 = begin; p0 < end; p0 += tile) {
    const int here = static_cast<int>(std::min<int64_t>(tile, end - p0));
    if (here < tile) std::fill(input.begin(), input.end(), 0.f);
    for (int p = 0; p < here; ++p) {
      float* row = input.data() + static_cast<size_t>(p) * k0;
      for (const Part& part : parts) {
        const float* src = part.data + (p0 + p) * part.row_stride;
        row = std::copy(src, src + part.width, row);
      }
    }
    const float* in = input.data();
    int in_s = k0;
    for (size_t i = 0; i < layers.size(); ++i) {
      const Layer& l = layers[i];
      const bool is_last = i + 1 == layers.size();
      float* dst = is_last ? last.data() : (in == buf_a.data() ? buf_b.data() : buf_a.data());
#ifdef SSP_X86
      if (isa == 2) layer_avx512(l, in, in_s, dst, l.pad, !is_last);
      else
#endif
        layer_plain(l, in, in_s, dst, l.pad, tile, !is_last);
      in = dst;
      in_s = l.pad;
    }
    for (int p = 0; p < here; ++p)
      std::copy(last.data() + p * layers.back().pad, last.data() + p * layers.back().pad + n_out,
                out + (p0 + p) * out_stride);
  }
}

}  // namespace

torch::Tensor mlp_forward(std::vector<torch::Tensor> xs, std::vector<torch::Tensor> weights,
                          std::vector<torch::Tensor> biases, std::vector<int64_t> outs, int64_t extra, int64_t isa) {
  TORCH_CHECK(!xs.empty(), "no input");
  TORCH_CHECK(!weights.empty() && weights.size() == biases.size() && weights.size() == outs.size(),
              "one weight, bias and width per layer");
  const int64_t m = xs[0].size(0);
  std::vector<Part> parts;
  int64_t k = 0;
  for (auto& x : xs) {
    TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat && x.device().is_cpu() && x.size(0) == m,
                "every input part must be [M, k] float32 on the CPU");
    if (x.stride(1) != 1 || x.stride(0) < x.size(1)) x = x.contiguous();
    parts.push_back({x.data_ptr<float>(), x.stride(0), static_cast<int>(x.size(1))});
    k += x.size(1);
  }
  const int k0 = static_cast<int>(k);
  std::vector<Layer> layers;
  for (size_t i = 0; i < weights.size(); ++i) {
    const auto& w = weights[i];
    const auto& b = biases[i];
    TORCH_CHECK(w.dim() == 2 && w.is_contiguous() && w.scalar_type() == torch::kFloat, "weight ", i,
                " must be a contiguous float32 [K, P]");
    TORCH_CHECK(w.size(0) == k, "layer ", i, " takes ", w.size(0), " inputs, gets ", k);
    TORCH_CHECK(w.size(1) % 16 == 0 && outs[i] <= w.size(1) && outs[i] > 0, "layer ", i,
                ": padded width must be a multiple of 16 and hold its outputs");
    TORCH_CHECK(b.is_contiguous() && b.numel() == w.size(1) && b.scalar_type() == torch::kFloat, "bias ", i,
                " must be a contiguous float32 [P]");
    layers.push_back({w.data_ptr<float>(), b.data_ptr<float>(), static_cast<int>(k), static_cast<int>(w.size(1)),
                      static_cast<int>(outs[i])});
    k = w.size(1);  // the next layer reads the padded activations (zeros in the padding)
  }
  TORCH_CHECK(extra >= 0, "extra columns must be >= 0");
  auto out = torch::empty({m, outs.back() + extra}, xs[0].options());  // the extra columns are the caller's
  float* op = out.data_ptr<float>();
  if (isa == 3) {  // bfloat16 products in AMX tiles, where this CPU and the OS allow them (nerf/csrc/mlp_amx.cpp)
    TORCH_CHECK(sspnerf::amx_usable(), "the bfloat16 MLP kernel needs AMX-BF16 (not usable here)");
    sspnerf::mlp_amx(layers, parts, k0, op, outs.back() + extra, m);
    return out;
  }
  const int chosen = isa < 0 ? best_isa() : static_cast<int>(std::min<int64_t>(isa, best_isa()));
  at::parallel_for(0, (m + 3) / 4, 64, [&](int64_t begin, int64_t end) {  // in units of 4 points
    run_points(layers, parts, k0, op, outs.back() + extra, begin * 4, std::min(end * 4, m), chosen);
  });
  return out;
}

int64_t mlp_isa() { return best_isa(); }

bool mlp_amx_usable() { return sspnerf::amx_usable(); }
