// The Python module of the compiled CPU kernels (nerf/cpu_kernels.py builds hash_grid.cpp, mlp.cpp and this file
// into one extension).
#include <torch/extension.h>

#include <vector>

torch::Tensor hash_grid_forward(torch::Tensor x, torch::Tensor table, torch::Tensor aabb, torch::Tensor res,
                                torch::Tensor mult);
std::vector<torch::Tensor> hash_grid_backward(torch::Tensor grad_out, torch::Tensor x, torch::Tensor table,
                                              torch::Tensor aabb, torch::Tensor res, torch::Tensor mult,
                                              bool want_x);
torch::Tensor mlp_forward(std::vector<torch::Tensor> xs, std::vector<torch::Tensor> weights,
                          std::vector<torch::Tensor> biases, std::vector<int64_t> outs, int64_t extra,
                          int64_t isa);
int64_t mlp_isa();
bool mlp_amx_usable();

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &hash_grid_forward, "hash-grid lookup [N, 3] -> [N, L*F]");
  m.def("backward", &hash_grid_backward, "gradients of the lookup: table [L, T, F], points [N, 3]");
  m.def("mlp_forward", &mlp_forward, "ReLU MLP inference of input parts [M, k_i] -> [M, N] (nerf/csrc/mlp.cpp)");
  m.def("mlp_isa", &mlp_isa, "the MLP kernel's best float32 instruction set here: 0 plain C++, 2 AVX-512");
  m.def("mlp_amx_usable", &mlp_amx_usable, "whether the bfloat16 AMX variant (isa 3) can run here");
}
