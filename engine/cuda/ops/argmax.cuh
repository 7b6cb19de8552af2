#pragma once
// Greedy token choice on the GPU: the index of the largest value of each row of fp16 logits, the
// lowest index among equal maxima (as argmax_token in engine/generate/sampler.h); -1 for a row
// holding a NaN. Host-includable declarations; device pointers.
#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace flexgen::cuda {

// out[r] = argmax of x[r, 0 .. cols). Launch: one block of 256 threads per row.
void argmax_rows(const __half* x, std::int64_t rows, std::int64_t cols, std::int32_t* out, cudaStream_t stream);

}  // namespace flexgen::cuda
