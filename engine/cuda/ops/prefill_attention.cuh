#pragma once
// Causal attention over T new tokens per unit (prefill) on the GPU, reading the keys and values
// from the position-major KV cache. Host-includable declarations; device pointers.
#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "engine/cuda/ops/kv_view.cuh"

namespace flexgen::cuda {

// Largest head_dim the attention kernels take.
inline constexpr int kMaxAttentionHeadDim = 128;

// For every unit u = b * num_heads + h held by `kv` and every t < tokens, the query at position
// p = past + t attends to positions pad_len[b] .. p with softmax weights (a padding query,
// p < pad_len[b], attends to its own key only: its output is its own value row), exactly as
// unit_attention in engine/runtime/unit_attention.h.
//   q, out:  [batch, tokens, num_heads * head_dim]; q already scaled by head_dim^-0.5
//   kv:      positions 0 .. past + tokens - 1 of every unit must hold this call's keys / values
//   pad_len: [batch] int32
// Units in no part of kv are skipped (their output columns are not written).
// Throws flexgen::Error when head_dim is outside 1..128.
//
// Launch: grid (units, ceil(tokens / 32)), 128 threads: a block takes 32 queries of one unit, four
// threads per query each owning a quarter of head_dim. Keys and values stream through shared memory
// in tiles of 32 positions (converted to fp32 once), from pad_len[b] up to the block's last query;
// scores in chunks of 16 keys with an online softmax (running max and sum, FlashAttention style),
// all in fp32. CUDA cores only (no tensor cores): see docs/cuda-kernels.md.
void prefill_attention(const __half* q, const KvView& kv, const std::int32_t* pad_len,
                       std::int64_t batch, int num_heads, int head_dim, std::int64_t tokens,
                       std::int64_t past, __half* out, cudaStream_t stream);

}  // namespace flexgen::cuda
