#pragma once
// Rotary position embeddings (LLaMA) on the GPU, in place on the projections' output, applied to
// q and k before k enters the cache. Host-includable declarations; device pointers.
#include <cstdint>
#include <vector>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace flexgen::cuda {

// Most rotary pairs (head_dim / 2) a table holds: head_dim up to 128 (kMaxAttentionHeadDim).
inline constexpr int kMaxRopePairs = 64;

// The frequencies of rope_inv_freq (engine/model/llama_layer.h) in double, passed by value to the
// kernel (512 bytes of parameter space).
struct RopeTable {
  double inv_freq[kMaxRopePairs] = {};
  int pairs = 0;
};

// Throws flexgen::Error when there are more than kMaxRopePairs frequencies.
RopeTable make_rope_table(const std::vector<double>& inv_freq);

// x: [batch, tokens, heads * head_dim], rotated in place as apply_rotary in llama_layer.h (HF's
// rotate_half convention: dimension i < head_dim / 2 pairs with i + head_dim / 2): the token at
// padded position p = past + t of sequence b turns by angle r * inv_freq[i] with rotary position
// r = p - pad_len[b] for a real token, 0 for padding. The angle, its sine and cosine are computed
// in double (as the host), the rotation in fp32 on the fp16 values, rounded once.
// head_dim must be 2 * table.pairs. Launch: one block per (b, t) row, one thread per pair; each
// thread computes its sine and cosine once and turns that pair in every head.
void apply_rotary(__half* x, std::int64_t batch, std::int64_t tokens, int heads, int head_dim,
                  const RopeTable& table, const std::int32_t* pad_len, std::int64_t past, cudaStream_t stream);

}  // namespace flexgen::cuda
