#pragma once
// Exact LLaMA inference on the host, one piece at a time (as opt_layer.h for OPT): the LLaMA
// kernels (RMSNorm, rotary embeddings, SwiGLU), the embedding, one decoder layer for one batch
// with its KV cache, and the final RMSNorm plus LM head. The offloading runtime calls the pieces
// per (layer, batch) through engine/model/decoder.h; LlamaHostModel is the whole-model driver.
//
// Semantics (HF LlamaForCausalLM, docs/llama.md):
//   x = x + o_proj(attention(rope(q), rope(k), v));  x = x + down(silu(gate(n)) * up(n)),
//   n = RMSNorm(x) before each half, q scaled by head_dim^-0.5 after the rotation. Grouped-query
//   attention: query head i reads key/value head i / (num_heads / num_kv_heads). Left padding as
//   OPT (BatchState); the rotary position of a real token is the number of real tokens before it
//   (HF generate's cumsum(mask) - 1), so a sequence gives the same result alone or padded.
#include <cstdint>
#include <span>
#include <vector>

#include "engine/core/model_spec.h"
#include "engine/model/llama_weights.h"
#include "engine/model/opt_layer.h"
#include "engine/tensor/tensor.h"

namespace flexgen {

// ---- kernels -----------------------------------------------------------------------------------

// y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight, the mean accumulated in double.
// x and y may be the same span.
void rms_norm(std::span<const float> x, std::span<const float> weight, std::int64_t rows, std::int64_t cols,
              double eps, std::span<float> y);

// gate[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + exp(-x)) (computed in double).
void silu_mul(std::span<float> gate, std::span<const float> up);

// The rotary frequencies of the spec, head_dim / 2 of them: inv_freq[i] = rope_theta^(-2i / d),
// then the spec's scaling (linear: divided by factor; llama3: HF's _compute_llama3_parameters).
// In double.
std::vector<double> rope_inv_freq(const ModelSpec& spec);

// The rotary position of the token at padded position `pos` of sequence `b`: pos - pad_len[b]
// for a real token, 0 for padding (its rows are never read by a real token).
inline std::int64_t rope_position(const BatchState& state, std::int64_t b, std::int64_t pos) {
  const std::int64_t pad = state.pad_len[static_cast<std::size_t>(b)];
  return pos < pad ? 0 : pos - pad;
}

// Rotates x [B, T, heads * head_dim] in place (HF's rotate_half convention: dimension i < d/2
// pairs with i + d/2): x_i' = x_i cos(p f_i) - x_{i+d/2} sin(p f_i), x_{i+d/2}' = x_{i+d/2}
// cos(p f_i) + x_i sin(p f_i), p = rope_position(state, b, state.past_len + t). cos and sin in
// double, the products rounded to float.
void apply_rotary(std::span<float> x, std::int64_t batch, std::int64_t tokens, std::int64_t heads,
                  std::int64_t head_dim, const std::vector<double>& inv_freq, const BatchState& state);

// ---- the model, piece by piece -------------------------------------------------------------------

// Token embedding of `token_ids` ([B, T] row-major, B = state.batch_size()) -> hidden [B, T, h].
// Throws flexgen::Error for an id outside the vocabulary, a position at or beyond max_positions,
// or a size that is not a multiple of B.
Tensor llama_embed(const ModelSpec& spec, const LlamaWeights& weights, std::span<const std::int32_t> token_ids,
                   const BatchState& state);

// RMSNorm, then q [B, T, h] (rotated, scaled by head_dim^-0.5), k [B, T, kv_dim] (rotated) and
// v [B, T, kv_dim]; the positions are state.past_len .. + T - 1.
void llama_attention_projections(const ModelSpec& spec, const LlamaLayerWeights& layer, const Tensor& hidden,
                                 const BatchState& state, Tensor& q, Tensor& k, Tensor& v);

// hidden += o_proj(attended); hidden += down(silu(gate(n)) * up(n)), n = RMSNorm(hidden).
void llama_attention_output_and_mlp(const ModelSpec& spec, const LlamaLayerWeights& layer, const Tensor& attended,
                                    Tensor& hidden);

// One decoder layer for one batch, in place on hidden [B, T, h], with the layer's cache
// (LayerKvCache of [B, capacity, kv_dim]); as opt_layer_forward.
void llama_layer_forward(const ModelSpec& spec, const LlamaLayerWeights& layer, Tensor& hidden, LayerKvCache& cache,
                         const BatchState& state);

// Final RMSNorm and LM head: hidden [B, T, h] -> logits [B, T, vocab].
Tensor llama_final(const ModelSpec& spec, const LlamaWeights& weights, const Tensor& hidden);
// The same for the last position of each sequence: [B, vocab].
Tensor llama_final_last(const ModelSpec& spec, const LlamaWeights& weights, const Tensor& hidden);

}  // namespace flexgen
