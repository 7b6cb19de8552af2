#pragma once
// LayerNorm on the GPU: fp16 storage, fp32 math (as engine/model/host_ops.h's layer_norm, whose
// mean and variance are accumulated in double). Host-includable declarations; device pointers.
#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace flexgen::cuda {

// y[r, :] = (x[r, :] - mean) / sqrt(var + eps) * gamma + beta for `rows` rows of `cols` values
// (biased variance). gamma and beta hold `cols` values. x and y may be the same buffer.
// Launch: one block per row (32..256 threads); 16-byte loads and stores when cols % 8 == 0 and
// every pointer is 16-byte aligned, 2-byte ones otherwise.
void layer_norm(const __half* x, const __half* gamma, const __half* beta, std::int64_t rows,
                std::int64_t cols, float eps, __half* y, cudaStream_t stream);

}  // namespace flexgen::cuda
