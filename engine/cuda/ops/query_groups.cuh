#pragma once
// Grouped-query attention helper on the GPU: the summed query of each key/value head's group,
// which scores a unit's positions for top-k selection (one selection per key/value unit, as the
// host runtime's selection_query). Host-includable declarations; device pointers.
#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace flexgen::cuda {

// out[u, :] = sum over g < group of q[u * group + g, :] for u < units (q: [units * group,
// head_dim], out: [units, head_dim]), summed in fp32 in order of g and rounded once. With a decode
// step's queries [batch, 1, num_heads * head_dim] this is the key/value units' query sums, as the
// query heads of a group are consecutive. One thread per output value.
void sum_query_groups(const __half* q, std::int64_t units, int group, int head_dim, __half* out,
                      cudaStream_t stream);

}  // namespace flexgen::cuda
