#pragma once
// Where the cached key and value rows of a batch's attention units live on the GPU.
// Host-includable (plain data).
//
// A unit is one (sequence, head): unit = sequence * num_heads + head. The cache of one (layer,
// batch) is split by unit into parts (docs/runtime.md): units [0, g) in the GPU home, the
// off-GPU units in the GPU cache slot the loads filled. Each part is position-major,
// [capacity, units_in_buffer, head_dim], so the row of unit u at position p is
//   keys + p * position_stride + (u - unit_begin) * head_dim
// where keys points at (position 0, unit_begin) of the part's buffer (a part may start at an
// offset in its buffer, e.g. the disk units behind the CPU units in the slot) and
// position_stride = units_in_buffer * head_dim elements. A unit in no part is skipped by the
// attention kernels (its output is not written), e.g. the units delegated to the CPU.
//
// Grouped-query attention (LLaMA): with group G > 1 the kernels' units are query units
// u = sequence * num_heads + head, and the parts hold key/value units: query unit u reads the
// rows of key/value unit u / G (= sequence * kv_heads + head / G, as num_heads = G * kv_heads).
#include <cstdint>

#include <cuda_fp16.h>

namespace flexgen::cuda {

struct KvPart {
  const __half* keys = nullptr;    // row of (position 0, unit_begin)
  const __half* values = nullptr;  // likewise; may be null for ops that read keys only
  std::int64_t unit_begin = 0;     // units [unit_begin, unit_end) of the batch
  std::int64_t unit_end = 0;
  std::int64_t position_stride = 0;  // elements between consecutive positions of one unit
};

inline constexpr int kMaxKvParts = 4;

// Passed to the kernels by value. Parts must not overlap.
struct KvView {
  KvPart parts[kMaxKvParts];
  int num_parts = 0;
  int group = 1;  // query heads per key/value unit (1: multi-head attention, OPT)
};

}  // namespace flexgen::cuda
