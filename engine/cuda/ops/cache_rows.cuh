#pragma once
// Moving KV-cache rows on the GPU: appending a visit's new rows into the parts of a (layer, batch)
// cache, and gathering the rows that sparse attention keeps from host memory. Rows are opaque byte
// strings of row_bytes (fp16 head_dim values, or one 4-bit quantized row). Host-includable
// declarations; device pointers (pinned host memory is device-accessible under UVA).
#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace flexgen::cuda {

// Copies the rows of units [unit_begin, unit_end) from src, laid out [batch, tokens, num_heads,
// row_bytes] (the projections' layout, unit = sequence * num_heads + head), to positions
// past .. past + tokens - 1 of a part laid out [capacity, part_units, row_bytes] whose first unit
// is unit_begin. cudaMemcpy2DAsync on `stream`: one copy for tokens == 1, one per sequence
// otherwise.
void append_cache_rows(const std::byte* src, std::int64_t tokens, int num_heads, std::int64_t row_bytes,
                       std::byte* part, std::int64_t part_units, std::int64_t unit_begin,
                       std::int64_t unit_end, std::int64_t past, cudaStream_t stream);

// For units i in [0, units): copies the rows at the positions kept[(kept_unit0 + i) * k + j]
// (j < k) from src, laid out [capacity, src_units, row_bytes] with this unit at src_unit0 + i, to
// the same positions of dst, laid out [capacity, dst_units, row_bytes] with it at dst_unit0 + i.
// One warp per (unit, kept position).
void gather_kept_rows(const std::byte* src, std::int64_t src_units, std::int64_t src_unit0, std::byte* dst,
                      std::int64_t dst_units, std::int64_t dst_unit0, std::int64_t units,
                      const std::int32_t* kept, std::int64_t kept_unit0, int k, std::int64_t row_bytes,
                      cudaStream_t stream);

// Copies `bytes` bytes with a kernel (the SMs load and store, 16 bytes per thread where both
// pointers and the size allow), e.g. from mapped pinned host memory: unlike cudaMemcpyAsync it
// does not wait for the copy engine, which may be busy with a large transfer on another stream.
void sm_copy(void* dst, const void* src, std::size_t bytes, cudaStream_t stream);

}  // namespace flexgen::cuda
