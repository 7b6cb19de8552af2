#pragma once
// LLaMA's SwiGLU activation on the GPU: the elementwise step between the gate/up projections and
// the down projection. Host-includable declarations; device pointers.
#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace flexgen::cuda {

// out[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + exp(-x)), in fp32 on fp16 values (as silu_mul
// in engine/model/llama_layer.h, which computes silu in double), rounded once. out may alias gate
// or up. Grid-stride, 8 values per thread when n % 8 == 0 and the pointers are 16-byte aligned.
void silu_mul(const __half* gate, const __half* up, std::int64_t n, __half* out, cudaStream_t stream);

}  // namespace flexgen::cuda
