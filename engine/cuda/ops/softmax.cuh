#pragma once
// Row-wise softmax on the GPU, fp32 math, for fp32 or fp16 rows. Host-includable declarations;
// device pointers.
#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace flexgen::cuda {

// In place over `rows` rows of `cols` values: x = exp(x - max) / sum. -inf entries get 0; every
// row must hold a finite value (else the row comes out NaN). Launch: one block per row
// (32..256 threads), three passes (max, sum, write).
void softmax(float* x, std::int64_t rows, std::int64_t cols, cudaStream_t stream);
void softmax(__half* x, std::int64_t rows, std::int64_t cols, cudaStream_t stream);

}  // namespace flexgen::cuda
