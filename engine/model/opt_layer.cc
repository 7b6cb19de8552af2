#include "engine/model/opt_layer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/core/error.h"
#include "engine/model/host_ops.h"

namespace flexgen {
namespace {

void check_shape(const char* owner, const char* name, const Tensor& tensor, const Shape& expected) {
  FLEXGEN_REQUIRE(tensor.shape() == expected, owner, ": ", name, " has shape ",
                  shape_to_string(tensor.shape()), ", expected ", shape_to_string(expected));
}

void check_state(const BatchState& state) {
  FLEXGEN_REQUIRE(state.batch_size() > 0, "batch state: no sequences");
  FLEXGEN_REQUIRE(state.past_len >= 0, "batch state: past_len ", state.past_len, " is negative");
  for (std::int64_t b = 0; b < state.batch_size(); ++b) {
    FLEXGEN_REQUIRE(state.pad_len[static_cast<std::size_t>(b)] >= 0, "batch state: pad_len[", b,
                    "] = ", state.pad_len[static_cast<std::size_t>(b)], " is negative");
  }
}

// Logits of `rows` rows of hidden states: final LayerNorm, then x embed_tokens^T.
Tensor final_logits(const ModelSpec& spec, const OptWeights& weights, std::span<const float> x,
                    std::int64_t rows) {
  const std::int64_t h = spec.hidden_size;
  Tensor normed({rows, h});
  layer_norm(x, weights.final_ln_weight.span(), weights.final_ln_bias.span(), rows, h,
             spec.layer_norm_eps, normed.span());
  Tensor logits({rows, spec.vocab_size});
  linear(normed.span(), rows, h, weights.embed_tokens.span(), {}, spec.vocab_size, logits.span());
  return logits;
}

void check_hidden(const ModelSpec& spec, const Tensor& hidden, const char* where) {
  FLEXGEN_REQUIRE(hidden.rank() == 3 && hidden.dim(2) == spec.hidden_size && hidden.dim(0) > 0 &&
                      hidden.dim(1) > 0,
                  where, ": hidden states have shape ", shape_to_string(hidden.shape()),
                  ", expected [B, T, ", spec.hidden_size, "] with B, T >= 1");
}

}  // namespace

BatchState BatchState::left_padded(const std::vector<std::int64_t>& lengths) {
  FLEXGEN_REQUIRE(!lengths.empty(), "batch state: no sequences");
  std::int64_t longest = 0;
  for (std::size_t b = 0; b < lengths.size(); ++b) {
    FLEXGEN_REQUIRE(lengths[b] >= 1, "batch state: sequence ", b, " has length ", lengths[b],
                    ", expected at least 1 token");
    longest = std::max(longest, lengths[b]);
  }
  BatchState state;
  for (std::int64_t length : lengths) state.pad_len.push_back(longest - length);
  return state;
}

LayerKvCache LayerKvCache::allocate(std::int64_t batch, std::int64_t capacity,
                                    std::int64_t hidden) {
  FLEXGEN_REQUIRE(batch >= 1 && capacity >= 1 && hidden >= 1, "KV cache: invalid size [", batch,
                  ", ", capacity, ", ", hidden, "]");
  LayerKvCache cache;
  cache.key = Tensor({batch, capacity, hidden});
  cache.value = Tensor({batch, capacity, hidden});
  return cache;
}

void check_opt_host_spec(const ModelSpec& spec) {
  const char* name = spec.name.c_str();
  FLEXGEN_REQUIRE(spec.hidden_size > 0, "model spec ", name, ": hidden_size ", spec.hidden_size,
                  " must be positive");
  FLEXGEN_REQUIRE(spec.num_heads > 0, "model spec ", name, ": num_heads ", spec.num_heads,
                  " must be positive");
  FLEXGEN_REQUIRE(spec.hidden_size % spec.num_heads == 0, "model spec ", name, ": hidden_size ",
                  spec.hidden_size, " is not divisible by num_heads ", spec.num_heads);
  FLEXGEN_REQUIRE(spec.ffn_dim > 0, "model spec ", name, ": ffn_dim ", spec.ffn_dim,
                  " must be positive");
  FLEXGEN_REQUIRE(spec.vocab_size > 0, "model spec ", name, ": vocab_size ", spec.vocab_size,
                  " must be positive");
  FLEXGEN_REQUIRE(spec.max_positions > 0, "model spec ", name, ": max_positions ",
                  spec.max_positions, " must be positive");
  FLEXGEN_REQUIRE(spec.num_layers >= 0, "model spec ", name, ": num_layers ", spec.num_layers,
                  " is negative");
  FLEXGEN_REQUIRE(std::isfinite(spec.layer_norm_eps) && spec.layer_norm_eps >= 0.0, "model spec ",
                  name, ": layer_norm_eps ", spec.layer_norm_eps, " must be finite and >= 0");
}

void check_opt_layer_weights(const ModelSpec& spec, const OptLayerWeights& layer) {
  const std::int64_t h = spec.hidden_size;
  const std::int64_t f = spec.ffn_dim;
  const char* owner = "layer weights";
  check_shape(owner, "attn_ln_weight", layer.attn_ln_weight, {h});
  check_shape(owner, "attn_ln_bias", layer.attn_ln_bias, {h});
  check_shape(owner, "q_weight", layer.q_weight, {h, h});
  check_shape(owner, "q_bias", layer.q_bias, {h});
  check_shape(owner, "k_weight", layer.k_weight, {h, h});
  check_shape(owner, "k_bias", layer.k_bias, {h});
  check_shape(owner, "v_weight", layer.v_weight, {h, h});
  check_shape(owner, "v_bias", layer.v_bias, {h});
  check_shape(owner, "out_weight", layer.out_weight, {h, h});
  check_shape(owner, "out_bias", layer.out_bias, {h});
  check_shape(owner, "mlp_ln_weight", layer.mlp_ln_weight, {h});
  check_shape(owner, "mlp_ln_bias", layer.mlp_ln_bias, {h});
  check_shape(owner, "fc1_weight", layer.fc1_weight, {f, h});
  check_shape(owner, "fc1_bias", layer.fc1_bias, {f});
  check_shape(owner, "fc2_weight", layer.fc2_weight, {h, f});
  check_shape(owner, "fc2_bias", layer.fc2_bias, {h});
}

namespace {
// What the LM head reads (a pipeline stage that holds the output layer but not the embedding has
// no position table).
void check_opt_head_weights(const ModelSpec& spec, const OptWeights& weights) {
  const char* owner = "model weights";
  check_shape(owner, "embed_tokens", weights.embed_tokens, {spec.vocab_size, spec.hidden_size});
  check_shape(owner, "final_ln_weight", weights.final_ln_weight, {spec.hidden_size});
  check_shape(owner, "final_ln_bias", weights.final_ln_bias, {spec.hidden_size});
}
}  // namespace

void check_opt_embedding_weights(const ModelSpec& spec, const OptWeights& weights) {
  const char* owner = "model weights";
  check_shape(owner, "embed_tokens", weights.embed_tokens, {spec.vocab_size, spec.hidden_size});
  check_shape(owner, "embed_positions", weights.embed_positions,
              {spec.position_rows(), spec.hidden_size});
  check_shape(owner, "final_ln_weight", weights.final_ln_weight, {spec.hidden_size});
  check_shape(owner, "final_ln_bias", weights.final_ln_bias, {spec.hidden_size});
}

Tensor opt_embed(const ModelSpec& spec, const OptWeights& weights,
                 std::span<const std::int32_t> token_ids, const BatchState& state) {
  check_opt_host_spec(spec);
  check_state(state);
  const std::int64_t batch = state.batch_size();
  const std::int64_t count = static_cast<std::int64_t>(token_ids.size());
  FLEXGEN_REQUIRE(count > 0 && count % batch == 0, "embedding: ", count,
                  " token ids is not a positive multiple of the batch size ", batch);
  const std::int64_t tokens = count / batch;
  const std::int64_t h = spec.hidden_size;
  check_shape("model weights", "embed_tokens", weights.embed_tokens, {spec.vocab_size, h});
  check_shape("model weights", "embed_positions", weights.embed_positions,
              {spec.position_rows(), h});
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int32_t id = token_ids[static_cast<std::size_t>(i)];
    FLEXGEN_REQUIRE(id >= 0 && id < spec.vocab_size, "embedding: token id ", id, " of sequence ",
                    i / tokens, " at step position ", state.past_len + i % tokens,
                    " is outside the vocabulary [0, ", spec.vocab_size, ")");
  }
  Tensor hidden({batch, tokens, h});
  embedding(weights.embed_tokens.span(), spec.vocab_size, h, token_ids, hidden.span());
  const float* positions = weights.embed_positions.data();
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t t = 0; t < tokens; ++t) {
      const std::int64_t pos = state.past_len + t;
      const std::int64_t row = state.position_row(b, pos);
      FLEXGEN_REQUIRE(row < spec.position_rows(), "embedding: sequence ", b, " reaches position ",
                      row - 2, ", beyond max_positions ", spec.max_positions);
      float* out = hidden.data() + (b * tokens + t) * h;
      const float* p = positions + row * h;
      for (std::int64_t c = 0; c < h; ++c) out[c] += p[c];
    }
  }
  return hidden;
}

void opt_layer_forward(const ModelSpec& spec, const OptLayerWeights& layer, Tensor& hidden,
                       LayerKvCache& cache, const BatchState& state) {
  check_opt_host_spec(spec);
  check_opt_layer_weights(spec, layer);
  check_state(state);
  check_hidden(spec, hidden, "decoder layer");
  const std::int64_t batch = state.batch_size();
  const std::int64_t tokens = hidden.dim(1);
  const std::int64_t h = spec.hidden_size;
  const std::int64_t past = state.past_len;
  FLEXGEN_REQUIRE(hidden.dim(0) == batch, "decoder layer: hidden states hold ", hidden.dim(0),
                  " sequences, the batch state ", batch);
  FLEXGEN_REQUIRE(cache.key.rank() == 3 && cache.key.dim(0) == batch && cache.key.dim(2) == h &&
                      cache.value.shape() == cache.key.shape(),
                  "decoder layer: KV cache has key ", shape_to_string(cache.key.shape()),
                  " and value ", shape_to_string(cache.value.shape()), ", expected both [", batch,
                  ", capacity, ", h, "]");
  FLEXGEN_REQUIRE(cache.length == past, "decoder layer: KV cache holds ", cache.length,
                  " positions but the batch state says ", past);
  const std::int64_t capacity = cache.capacity();
  FLEXGEN_REQUIRE(past + tokens <= capacity, "decoder layer: KV cache capacity ", capacity,
                  " is too small for ", past, " + ", tokens, " positions");

  Tensor q, k, v;
  opt_attention_projections(spec, layer, hidden, q, k, v);
  const std::size_t step_bytes = static_cast<std::size_t>(tokens * h) * sizeof(float);
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t dst = (b * capacity + past) * h;
    std::memcpy(cache.key.data() + dst, k.data() + b * tokens * h, step_bytes);
    std::memcpy(cache.value.data() + dst, v.data() + b * tokens * h, step_bytes);
  }

  AttentionShape shape;
  shape.batch = batch;
  shape.new_tokens = tokens;
  shape.num_heads = spec.num_heads;
  shape.head_dim = spec.head_dim();
  shape.capacity = capacity;
  shape.past_len = past;
  Tensor& attended = k;  // k is no longer needed
  attention(q.span(), cache.key.span(), cache.value.span(), state.pad_len, shape, attended.span());
  cache.length = past + tokens;
  opt_attention_output_and_mlp(spec, layer, attended, hidden);
}

void opt_attention_projections(const ModelSpec& spec, const OptLayerWeights& layer,
                               const Tensor& hidden, Tensor& q, Tensor& k, Tensor& v) {
  const std::int64_t h = spec.hidden_size;
  const std::int64_t rows = hidden.numel() / h;
  Tensor normed({rows, h});
  layer_norm(hidden.span(), layer.attn_ln_weight.span(), layer.attn_ln_bias.span(), rows, h,
             spec.layer_norm_eps, normed.span());
  q = Tensor(hidden.shape());
  k = Tensor(hidden.shape());
  v = Tensor(hidden.shape());
  linear(normed.span(), rows, h, layer.q_weight.span(), layer.q_bias.span(), h, q.span());
  linear(normed.span(), rows, h, layer.k_weight.span(), layer.k_bias.span(), h, k.span());
  linear(normed.span(), rows, h, layer.v_weight.span(), layer.v_bias.span(), h, v.span());
  scale_inplace(q.span(),
                static_cast<float>(1.0 / std::sqrt(static_cast<double>(spec.head_dim()))));
}

void opt_attention_output_and_mlp(const ModelSpec& spec, const OptLayerWeights& layer,
                                  const Tensor& attended, Tensor& hidden) {
  const std::int64_t h = spec.hidden_size;
  const std::int64_t f = spec.ffn_dim;
  const std::int64_t rows = hidden.numel() / h;
  Tensor projected({rows, h});
  linear(attended.span(), rows, h, layer.out_weight.span(), layer.out_bias.span(), h,
         projected.span());
  add_inplace(hidden.span(), projected.span());
  Tensor normed({rows, h});
  layer_norm(hidden.span(), layer.mlp_ln_weight.span(), layer.mlp_ln_bias.span(), rows, h,
             spec.layer_norm_eps, normed.span());
  Tensor ffn({rows, f});
  linear(normed.span(), rows, h, layer.fc1_weight.span(), layer.fc1_bias.span(), f, ffn.span());
  relu(ffn.span());
  linear(ffn.span(), rows, f, layer.fc2_weight.span(), layer.fc2_bias.span(), h, projected.span());
  add_inplace(hidden.span(), projected.span());
}

Tensor opt_final(const ModelSpec& spec, const OptWeights& weights, const Tensor& hidden) {
  check_opt_host_spec(spec);
  check_opt_head_weights(spec, weights);
  check_hidden(spec, hidden, "LM head");
  const std::int64_t batch = hidden.dim(0);
  const std::int64_t tokens = hidden.dim(1);
  Tensor logits = final_logits(spec, weights, hidden.span(), batch * tokens);
  logits.reshape({batch, tokens, spec.vocab_size});
  return logits;
}

Tensor opt_final_last(const ModelSpec& spec, const OptWeights& weights, const Tensor& hidden) {
  check_opt_host_spec(spec);
  check_opt_head_weights(spec, weights);
  check_hidden(spec, hidden, "LM head");
  const std::int64_t batch = hidden.dim(0);
  const std::int64_t tokens = hidden.dim(1);
  const std::int64_t h = spec.hidden_size;
  Tensor last({batch, h});
  for (std::int64_t b = 0; b < batch; ++b) {
    std::memcpy(last.data() + b * h, hidden.data() + (b * tokens + tokens - 1) * h,
                static_cast<std::size_t>(h) * sizeof(float));
  }
  return final_logits(spec, weights, last.span(), batch);
}

}  // namespace flexgen
