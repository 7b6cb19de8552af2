#pragma once
// Delegated decode attention on the CPU (FlexGen's --cpu-cache-compute) over fp16 rows in host
// memory, as the CUDA backend runs it: the GPU sends each CPU-homed unit's query and new key and
// value (fp16), the CPU appends the new rows to the unit's cache at home and attends, and sends
// the output back (fp16). Memory-bound: every cached row is read once, in position-major order
// (the home layout [capacity, units, row]), by all threads in parallel over units; fp16 rows are
// widened with F16C where the CPU has it. Scores, softmax and sums in fp32.
#include <cstddef>
#include <cstdint>
#include <span>

#include "engine/core/units.h"

namespace flexgen {

struct CpuAttentionBatch {
  std::int64_t units = 0;      // CPU-homed units of the batch
  std::int64_t unit0 = 0;      // the batch's unit index of the first one (sequence = unit / heads)
  std::int64_t num_heads = 0;  // units per sequence: its key/value heads
  // Query heads per unit (grouped-query attention, LLaMA; 1 for OPT): query and out hold `group`
  // consecutive head vectors per unit, each attending to the unit's rows. Sparse attention keeps
  // one top-k selection per unit, scored with the group's summed query (as the host runtime).
  std::int64_t group = 1;
  std::int64_t head_dim = 0;
  std::int64_t past = 0;       // cached positions; the new token sits at position `past`
  std::span<const std::int64_t> pad_len;  // per sequence of the batch
  const std::uint16_t* query = nullptr;      // [units, group * head_dim] fp16, scaled
  const std::uint16_t* new_key = nullptr;    // [units, head_dim] fp16
  const std::uint16_t* new_value = nullptr;  // [units, head_dim] fp16
  std::byte* keys = nullptr;    // home rows [capacity, units, row_bytes]
  std::byte* values = nullptr;
  Bytes row_bytes = 0;          // head_dim * 2, or one 4-bit row (compressed)
  bool compressed = false;      // rows are 4-bit (cache_quant_spec, fp16 parameters)
  std::int64_t kept = 0;        // 0: dense; k > 0: top-k sparse attention over [0, past)
  std::uint16_t* out = nullptr; // [units, group * head_dim] fp16
};

// Appends the new rows at position `past` and writes each unit's attention output: dense as
// unit_attention (T = 1), sparse as select_top_k + sparse_unit_attention (unit_attention.h).
void cpu_decode_attention_f16(const CpuAttentionBatch& batch);

// One fp16 row of head_dim values as a 4-bit cache row (cache_quant_spec, fp16 parameters) of
// row_bytes at dst: how the delegated attention stores new rows of a compressed cache.
void quantize_cache_row_f16(const std::uint16_t* row, std::int64_t head_dim, std::byte* dst, Bytes row_bytes);

}  // namespace flexgen
