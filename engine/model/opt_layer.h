#pragma once
// Exact OPT inference on the host, one piece at a time: the embedding, one decoder layer for one
// batch with its KV cache, and the final LayerNorm plus LM head. The offloading runtime calls these
// per (layer, batch) with weights and caches handed in from wherever they live; OptHostModel is the
// simple whole-model driver built on them.
//
// Supported: OPT with pre-LayerNorm (do_layer_norm_before) and word_embed_proj_dim equal to the
// hidden size: every OPT model except opt-350m.
#include <cstdint>
#include <span>
#include <vector>

#include "engine/core/model_spec.h"
#include "engine/model/opt_weights.h"
#include "engine/tensor/tensor.h"

namespace flexgen {

// The state of one batch of B left-padded sequences that advance in lockstep.
//
// Each sequence occupies positions 0, 1, 2, ... of the padded batch; its first pad_len[b]
// positions are padding, the rest real tokens (prompt, then generated ones). past_len positions
// (pads included) are already in the KV cache; the next call's T tokens take positions past_len ..
// past_len + T - 1 in every sequence.
//
// Position ids follow HF OPT (OPTLearnedPositionalEmbedding): position = cumsum(attention_mask)
// * attention_mask - 1, looked up at row position + 2 of embed_positions. A real token's position
// is the number of real tokens before it (row pos - pad_len[b] + 2); a padding token gets position
// -1 (row 1).
struct BatchState {
  std::vector<std::int64_t> pad_len;  // [B]
  std::int64_t past_len = 0;

  std::int64_t batch_size() const { return static_cast<std::int64_t>(pad_len.size()); }

  // Row of embed_positions for the token at padded position `pos` of sequence `b`.
  std::int64_t position_row(std::int64_t b, std::int64_t pos) const {
    const std::int64_t pad = pad_len[static_cast<std::size_t>(b)];
    return pos < pad ? 1 : pos - pad + 2;
  }

  // The state before the prefill of prompts of these lengths, left-padded to the longest:
  // pad_len[b] = max(lengths) - lengths[b], past_len = 0. Throws flexgen::Error for an empty list
  // or a length < 1.
  static BatchState left_padded(const std::vector<std::int64_t>& lengths);
};

// The KV cache of one decoder layer for one batch.
//
// Layout: key and value are row-major [B, capacity, hidden]; the entry of sequence b, position p
// (padded positions, pads included), head i, dimension c is at index
// (b * capacity + p) * hidden + i * head_dim + c. Positions 0 .. length-1 are filled (entries of
// padding positions are written but never read by a real token). capacity is at least
// prompt_len + gen_len for a whole generation.
struct LayerKvCache {
  Tensor key;    // [B, capacity, hidden]
  Tensor value;  // [B, capacity, hidden]
  std::int64_t length = 0;

  // Zero-filled tensors of [batch, capacity, hidden], length 0.
  static LayerKvCache allocate(std::int64_t batch, std::int64_t capacity, std::int64_t hidden);

  std::int64_t batch() const { return key.rank() == 3 ? key.dim(0) : 0; }
  std::int64_t capacity() const { return key.rank() == 3 ? key.dim(1) : 0; }
};

// Checks what the host kernels rely on: positive sizes, hidden divisible by heads. Throws
// flexgen::Error naming the field. (A subset of ModelSpec::validate, kept here so that the host
// model does not depend on it.)
void check_opt_host_spec(const ModelSpec& spec);

// Throw flexgen::Error naming the tensor ("layer weights: fc1_weight has shape [..], expected
// [..]") when a shape does not match the spec.
void check_opt_layer_weights(const ModelSpec& spec, const OptLayerWeights& layer);
// Checks embed_tokens, embed_positions and the final LayerNorm (not the layers).
void check_opt_embedding_weights(const ModelSpec& spec, const OptWeights& weights);

// Token embedding plus position embedding of `token_ids`, row-major [B, T] with B =
// state.batch_size(), for positions state.past_len .. past_len + T - 1. Returns hidden [B, T, h].
// Uses weights.embed_tokens and weights.embed_positions only. Throws flexgen::Error for a token id
// outside the vocabulary, a position beyond max_positions, or a size that is not a multiple of B.
Tensor opt_embed(const ModelSpec& spec, const OptWeights& weights,
                 std::span<const std::int32_t> token_ids, const BatchState& state);

// One pre-LN decoder layer for one batch, in place on hidden [B, T, h]:
//   x = x + out_proj(attention(LN1(x)));  x = x + fc2(relu(fc1(LN2(x)))).
// q = (LN1(x) Wq^T + bq) * head_dim^-0.5 (HF's order). The layer's new keys and values are written
// into `cache` at positions state.past_len .. + T - 1 and cache.length becomes past_len + T; the
// attention is causal with the left-padding mask (see attention() in host_ops.h). Prefill (cache
// empty, T = prompt length) and decode (T = 1) are the same call. Does not advance `state`: the
// driver does that once every layer has run.
// Throws flexgen::Error for mismatched shapes, cache.length != state.past_len, or a cache too
// small for T more positions.
void opt_layer_forward(const ModelSpec& spec, const OptLayerWeights& layer, Tensor& hidden,
                       LayerKvCache& cache, const BatchState& state);

// The two halves of a decoder layer around the attention, for the offloading runtime (which runs
// the attention itself over a cache split across tiers):
//   opt_attention_projections: LN1, then q (scaled by head_dim^-0.5), k, v, each [B, T, h].
//   opt_attention_output_and_mlp: hidden += out_proj(attended); hidden += fc2(relu(fc1(LN2(hidden)))).
// Shapes are the caller's contract (opt_layer_forward checks them).
void opt_attention_projections(const ModelSpec& spec, const OptLayerWeights& layer,
                               const Tensor& hidden, Tensor& q, Tensor& k, Tensor& v);
void opt_attention_output_and_mlp(const ModelSpec& spec, const OptLayerWeights& layer,
                                  const Tensor& attended, Tensor& hidden);

// Final LayerNorm, then the LM head (hidden x embed_tokens^T, tied, no bias): hidden [B, T, h] ->
// logits [B, T, vocab] for every position. Uses final_ln_* and embed_tokens only.
Tensor opt_final(const ModelSpec& spec, const OptWeights& weights, const Tensor& hidden);

// As opt_final for the last position of each sequence only: hidden [B, T, h] -> logits [B, vocab].
Tensor opt_final_last(const ModelSpec& spec, const OptWeights& weights, const Tensor& hidden);

}  // namespace flexgen
