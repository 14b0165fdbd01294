// Shared by nerf/csrc/mlp.cpp (float32, plain C++ and AVX-512) and nerf/csrc/mlp_amx.cpp (bfloat16 tiles).
#pragma once

#include <cstdint>
#include <vector>

namespace sspnerf {

struct Layer {
  const float* wt;  // W^T [k, pad], float32
  const float* b;   // [pad]
  int k, pad, n;    // inputs, padded outputs (a multiple of 16), real outputs
};

struct Part {  // one input part: rows of `width` floats, `row_stride` apart
  const float* data;
  int64_t row_stride;
  int width;
};

// Whether this CPU has AMX-BF16 and AVX512-BF16 and the OS lets this process use the tile registers (Linux asks
// for them once per process: arch_prctl ARCH_REQ_XCOMP_PERM).
bool amx_usable();

// The MLP on all m points with bfloat16 products (float32 sums, biases and outputs) in AMX tiles of 16 points;
// out: [m, out_stride], the last layer's real columns written. amx_usable() must hold.
void mlp_amx(const std::vector<Layer>& layers, const std::vector<Part>& parts, int k0, float* out,
             int64_t out_stride, int64_t m);

}  // namespace sspnerf
