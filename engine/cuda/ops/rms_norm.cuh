#pragma once
// RMSNorm (LLaMA) on the GPU: fp16 storage, fp32 math (as engine/model/llama_layer.h's rms_norm,
// whose mean square is accumulated in double). Host-includable declarations; device pointers.
#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace flexgen::cuda {

// y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight for `rows` rows of `cols` values.
// x and y may be the same buffer. Launch: one block per row (32..256 threads), two passes (the sum
// of squares, then the output), 16-byte accesses when cols % 8 == 0 and every pointer is 16-byte
// aligned, 2-byte ones otherwise.
void rms_norm(const __half* x, const __half* weight, std::int64_t rows, std::int64_t cols, float eps, __half* y,
              cudaStream_t stream);

}  // namespace flexgen::cuda
