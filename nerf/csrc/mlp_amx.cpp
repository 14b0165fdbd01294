// The small ReLU MLPs of nerf/csrc/mlp.cpp with bfloat16 products in AMX tiles (Intel Sapphire Rapids and later):
// 16 points at a time through every layer, each layer one tile product per 32 inputs x 16 outputs
// (TDPBF16PS: 16 x 16 x 32 multiply-adds), sums, biases, ReLU and the output in float32. Inputs and weights are
// rounded to bfloat16 (8 significant bits): the outputs differ from float32's by ~4e-3 relative; the fast path's
// default where the CPU has it (cpu_mlp_precision = bfloat16; nerf/cpu_kernels.py: `mlp(..., bf16=True)`), measured
// against the reference image in benchmarks/NOTES.md and tests/test_cpu_kernels.py. Compilers without AMX
// intrinsics (GCC < 11, clang < 12) build without it (SSP_NO_AMX; nerf/cpu_kernels.py also retries with that flag
// when the assembler is too old).
//
// Layouts: activations of the 16 points [16, K'] bfloat16 (K' = the layer's inputs rounded up to 32, zeros after);
// weights in AMX's pair layout [K'/2, P, 2] (W^T rows 2i and 2i+1 side by side for each output), converted once per
// call; the tile products [16, P] float32, read back for the bias, ReLU and rounding to the next layer's input.
#include "mlp.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__x86_64__) && defined(__linux__) && !defined(SSP_NO_AMX) && \
    ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11))
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define SSP_AMX 1
#endif

namespace sspnerf {

#ifdef SSP_AMX
namespace {

#define AMX_TARGET "avx512f,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16"
constexpr int kRows = 16;        // points per tile
constexpr int kPairsPerTile = 16;  // a tile of inputs: 32 bfloat16 = 16 pairs
constexpr int kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64, "LDTILECFG reads 64 bytes");

int round32(int n) { return (n + 31) / 32 * 32; }

uint16_t to_bf16(float f) {  // round to nearest even (the weights; no NaNs in a trained net)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// W^T [k, pad] float32 -> [round32(k)/2, pad, 2] bfloat16 (zero rows past k).
std::vector<uint16_t> pair_layout(const Layer& l) {
  const int kp = round32(l.k);
  std::vector<uint16_t> out(static_cast<size_t>(kp) * l.pad, 0);
  for (int k = 0; k < l.k; ++k)
    for (int j = 0; j < l.pad; ++j)
      out[(static_cast<size_t>(k / 2) * l.pad + j) * 2 + k % 2] = to_bf16(l.wt[static_cast<int64_t>(k) * l.pad + j]);
  return out;
}

// NC tile products of 16 outputs each (columns nb0*16 ..) over all input blocks: C tiles 0..NC-1, A tile 4, B 5-7.
template <int NC>
__attribute__((target(AMX_TARGET))) inline void tile_group(const uint16_t* a, int a_stride, int kblocks,
                                                          const uint16_t* w, int pad, int nb0, float* c) {
  _tile_zero(0);
  if constexpr (NC > 1) _tile_zero(1);
  if constexpr (NC > 2) _tile_zero(2);
  if constexpr (NC > 3) _tile_zero(3);
  const int w_stride = pad * 4;  // bytes per pair row
  for (int kb = 0; kb < kblocks; ++kb) {
    _tile_loadd(4, a + kb * 32, a_stride * 2);
    const uint16_t* wk = w + (static_cast<int64_t>(kb) * kPairsPerTile * pad + nb0 * 16) * 2;
    _tile_loadd(5, wk, w_stride);
    _tile_dpbf16ps(0, 4, 5);
    if constexpr (NC > 1) { _tile_loadd(6, wk + 32, w_stride); _tile_dpbf16ps(1, 4, 6); }
    if constexpr (NC > 2) { _tile_loadd(7, wk + 64, w_stride); _tile_dpbf16ps(2, 4, 7); }
    if constexpr (NC > 3) { _tile_loadd(5, wk + 96, w_stride); _tile_dpbf16ps(3, 4, 5); }
  }
  _tile_stored(0, c + nb0 * 16, pad * 4);
  if constexpr (NC > 1) _tile_stored(1, c + (nb0 + 1) * 16, pad * 4);
  if constexpr (NC > 2) _tile_stored(2, c + (nb0 + 2) * 16, pad * 4);
  if constexpr (NC > 3) _tile_stored(3, c + (nb0 + 3) * 16, pad * 4);
}

// c [16, pad] = a [16, round32(k)] (bfloat16) x the layer's weights, without the bias.
__attribute__((target(AMX_TARGET))) void tile_layer(const Layer& l, const uint16_t* w, const uint16_t* a, float* c) {
  const int kblocks = round32(l.k) / 32, nblocks = l.pad / 16, a_stride = round32(l.k);
  for (int nb = 0; nb < nblocks; nb += 4) {
    switch (std::min(4, nblocks - nb)) {
      case 4: tile_group<4>(a, a_stride, kblocks, w, l.pad, nb, c); break;
      case 3: tile_group<3>(a, a_stride, kblocks, w, l.pad, nb, c); break;
      case 2: tile_group<2>(a, a_stride, kblocks, w, l.pad, nb, c); break;
      default: tile_group<1>(a, a_stride, kblocks, w, l.pad, nb, c); break;
    }
  }
}

// The next layer's input: relu(c + b) [16, pad] rounded to bfloat16 -> next [16, round32(pad)] (zeros after pad).
__attribute__((target(AMX_TARGET))) void bias_relu_bf16(const float* c, const float* b, int pad, uint16_t* next) {
  const int stride = round32(pad);
  const __m512 zero = _mm512_setzero_ps();
  for (int r = 0; r < kRows; ++r) {
    const float* row = c + r * pad;
    uint16_t* dst = next + r * stride;
    int j = 0;
    for (; j + 32 <= pad; j += 32) {
      const __m512 lo = _mm512_max_ps(_mm512_add_ps(_mm512_loadu_ps(row + j), _mm512_loadu_ps(b + j)), zero);
      const __m512 hi = _mm512_max_ps(_mm512_add_ps(_mm512_loadu_ps(row + j + 16), _mm512_loadu_ps(b + j + 16)), zero);
      _mm512_storeu_si512(dst + j, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
    }
    if (j < pad) {  // 16 left: those and 16 zeros
      const __m512 lo = _mm512_max_ps(_mm512_add_ps(_mm512_loadu_ps(row + j), _mm512_loadu_ps(b + j)), zero);
      _mm512_storeu_si512(dst + j, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(zero, lo)));
    }
  }
}

// One point's input: its rows of the parts, rounded to bfloat16, side by side from dst (16 values per step).
__attribute__((target(AMX_TARGET))) void gather_bf16(const std::vector<Part>& parts, int64_t point, uint16_t* dst) {
  for (const Part& part : parts) {
    const float* src = part.data + point * part.row_stride;
    for (int j = 0; j < part.width; j += 16) {
      const __mmask16 mask = part.width - j >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (part.width - j)) - 1);
      const __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, src + j));
      _mm256_mask_storeu_epi16(dst + j, mask, reinterpret_cast<__m256i>(v));
    }
    dst += part.width;
  }
}

// The last layer's real columns: c [16, pad] + b -> out rows (p0 .. p0 + here).
__attribute__((target(AMX_TARGET))) void bias_out(const float* c, const Layer& l, float* out, int64_t out_stride,
                                                  int here) {
  for (int p = 0; p < here; ++p)
    for (int j = 0; j < l.n; j += 16) {
      const __mmask16 mask = l.n - j >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (l.n - j)) - 1);
      _mm512_mask_storeu_ps(out + p * out_stride + j, mask,
                            _mm512_add_ps(_mm512_loadu_ps(c + p * l.pad + j), _mm512_loadu_ps(l.b + j)));
    }
}

// Tiles [t0, t1) of 16 points (the last may be short) through all layers.
__attribute__((target(AMX_TARGET))) void run_tiles(const std::vector<Layer>& layers,
                                                   const std::vector<std::vector<uint16_t>>& w,
                                                   const std::vector<Part>& parts, int k0, float* out,
                                                   int64_t out_stride, int64_t m, int64_t t0, int64_t t1) {
  int widest = 0, widest_out = 0;
  for (const Layer& l : layers) {
    widest = std::max(widest, round32(l.pad));
    widest_out = std::max(widest_out, l.pad);
  }
  const int in_stride = round32(k0);
  std::vector<uint16_t> input(static_cast<size_t>(kRows) * in_stride, 0);  // zeros after k0 stay
  std::vector<uint16_t> act_a(static_cast<size_t>(kRows) * widest, 0), act_b(act_a.size(), 0);
  std::vector<float> c(static_cast<size_t>(kRows) * widest_out);
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = kRows;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
  asm volatile("" ::: "memory");  // GCC's tile intrinsics are asm that does not declare the memory it reads
  for (int64_t tile = t0; tile < t1; ++tile) {
    const int64_t p0 = tile * kRows;
    const int here = static_cast<int>(std::min<int64_t>(kRows, m - p0));
    for (int p = 0; p < here; ++p) gather_bf16(parts, p0 + p, input.data() + p * in_stride);
    if (here < kRows) std::fill(input.begin() + here * in_stride, input.end(), 0);  // the short last tile
    const uint16_t* in = input.data();
    uint16_t* next = act_a.data();
    for (size_t i = 0; i + 1 < layers.size(); ++i) {
      tile_layer(layers[i], w[i].data(), in, c.data());
      bias_relu_bf16(c.data(), layers[i].b, layers[i].pad, next);
      in = next;
      next = next == act_a.data() ? act_b.data() : act_a.data();
    }
    tile_layer(layers.back(), w.back().data(), in, c.data());
    bias_out(c.data(), layers.back(), out + p0 * out_stride, out_stride, here);
  }
  _tile_release();
}

bool cpu_has_amx_bf16() {
  __builtin_cpu_init();
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool amx = (d >> 22 & 1) && (d >> 24 & 1), avx512 = (b >> 16 & 1) && (b >> 30 & 1) && (b >> 31 & 1);
  if (!amx || !avx512 || !__builtin_cpu_supports("avx512bw")) return false;  // the latter: also enabled by the OS
  return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 5 & 1);  // AVX512_BF16
}

}  // namespace

bool amx_usable() {
  static const bool ok = cpu_has_amx_bf16() && syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  return ok;
}

void mlp_amx(const std::vector<Layer>& layers, const std::vector<Part>& parts, int k0, float* out,
             int64_t out_stride, int64_t m) {
  std::vector<std::vector<uint16_t>> w;
  for (const Layer& l : layers) w.push_back(pair_layout(l));
  const int64_t tiles = (m + kRows - 1) / kRows;
  at::parallel_for(0, tiles, 16, [&](int64_t begin, int64_t end) {
    run_tiles(layers, w, parts, k0, out, out_stride, m, begin, end);
  });
}

#else  // not x86-64 Linux, or a compiler without AMX intrinsics: never usable

bool amx_usable() { return false; }
void mlp_amx(const std::vector<Layer>&, const std::vector<Part>&, int, float*, int64_t, int64_t) {}

#endif

}  // namespace sspnerf
