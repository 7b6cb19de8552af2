#include "engine/model/llama_layer.h"

#include <cmath>
#include <cstring>
#include <numbers>

#include "engine/core/error.h"
#include "engine/core/parallel.h"
#include "engine/model/host_ops.h"

namespace flexgen {
namespace {

constexpr std::int64_t kMinParallelWork = std::int64_t{1} << 15;

void check_hidden(const ModelSpec& spec, const Tensor& hidden, const char* where) {
  FLEXGEN_REQUIRE(hidden.rank() == 3 && hidden.dim(2) == spec.hidden_size && hidden.dim(0) > 0 && hidden.dim(1) > 0,
                  where, ": hidden states have shape ", shape_to_string(hidden.shape()), ", expected [B, T, ",
                  spec.hidden_size, "] with B, T >= 1");
}

void check_llama(const ModelSpec& spec) {
  FLEXGEN_REQUIRE(spec.family == ModelFamily::kLlama, "model ", spec.name, " is not a LLaMA model");
  spec.validate();
}

Tensor final_logits(const ModelSpec& spec, const LlamaWeights& weights, std::span<const float> x,
                    std::int64_t rows) {
  const std::int64_t h = spec.hidden_size;
  Tensor normed({rows, h});
  rms_norm(x, weights.final_norm.span(), rows, h, spec.layer_norm_eps, normed.span());
  Tensor logits({rows, spec.vocab_size});
  linear(normed.span(), rows, h, weights.head().span(), {}, spec.vocab_size, logits.span());
  return logits;
}

}  // namespace

void rms_norm(std::span<const float> x, std::span<const float> weight, std::int64_t rows, std::int64_t cols,
              double eps, std::span<float> y) {
  assert(static_cast<std::int64_t>(x.size()) == rows * cols);
  assert(static_cast<std::int64_t>(y.size()) == rows * cols);
  assert(static_cast<std::int64_t>(weight.size()) == cols);
  const float* xp = x.data();
  float* yp = y.data();
  const float* w = weight.data();
  parallel_for(rows, std::max<std::int64_t>(1, kMinParallelWork / std::max<std::int64_t>(cols, 1)),
               [=](std::int64_t begin, std::int64_t end) {
                 for (std::int64_t r = begin; r < end; ++r) {
                   const float* xr = xp + r * cols;
                   float* yr = yp + r * cols;
                   double sq = 0.0;
                   for (std::int64_t c = 0; c < cols; ++c) sq += static_cast<double>(xr[c]) * xr[c];
                   const double inv_rms = 1.0 / std::sqrt(sq / static_cast<double>(cols) + eps);
                   for (std::int64_t c = 0; c < cols; ++c) {
                     yr[c] = static_cast<float>(xr[c] * inv_rms) * w[c];
                   }
                 }
               });
}

void silu_mul(std::span<float> gate, std::span<const float> up) {
  assert(gate.size() == up.size());
  float* g = gate.data();
  const float* u = up.data();
  parallel_for(static_cast<std::int64_t>(gate.size()), kMinParallelWork, [=](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) {
      const double x = g[i];
      g[i] = static_cast<float>(x / (1.0 + std::exp(-x))) * u[i];
    }
  });
}

std::vector<double> rope_inv_freq(const ModelSpec& spec) {
  const std::int64_t d = spec.head_dim();
  std::vector<double> inv(static_cast<std::size_t>(d / 2));
  for (std::int64_t i = 0; i < d / 2; ++i) {
    inv[static_cast<std::size_t>(i)] =
        1.0 / std::pow(spec.rope_theta, static_cast<double>(2 * i) / static_cast<double>(d));
  }
  const RopeScaling& r = spec.rope_scaling;
  if (r.type == RopeScalingType::kLinear) {
    for (double& f : inv) f /= r.factor;
  } else if (r.type == RopeScalingType::kLlama3) {
    const double old_context = static_cast<double>(r.original_max_positions);
    const double low_freq_wavelen = old_context / r.low_freq_factor;
    const double high_freq_wavelen = old_context / r.high_freq_factor;
    for (double& f : inv) {
      const double wavelen = 2.0 * std::numbers::pi / f;
      if (wavelen < high_freq_wavelen) continue;  // high frequencies: unchanged
      if (wavelen > low_freq_wavelen) {           // low frequencies: divided by the factor
        f /= r.factor;
        continue;
      }
      const double smooth = (old_context / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
      f = (1.0 - smooth) * f / r.factor + smooth * f;
    }
  }
  return inv;
}

void apply_rotary(std::span<float> x, std::int64_t batch, std::int64_t tokens, std::int64_t heads,
                  std::int64_t head_dim, const std::vector<double>& inv_freq, const BatchState& state) {
  assert(static_cast<std::int64_t>(x.size()) == batch * tokens * heads * head_dim);
  assert(static_cast<std::int64_t>(inv_freq.size()) * 2 == head_dim);
  const std::int64_t half = head_dim / 2;
  float* xp = x.data();
  const std::int64_t rows = batch * tokens;
  parallel_for(rows, std::max<std::int64_t>(1, kMinParallelWork / std::max<std::int64_t>(heads * head_dim, 1)),
               [&, xp](std::int64_t begin, std::int64_t end) {
                 std::vector<double> cos_p(static_cast<std::size_t>(half)), sin_p(static_cast<std::size_t>(half));
                 for (std::int64_t row = begin; row < end; ++row) {
                   const std::int64_t b = row / tokens, t = row % tokens;
                   const auto p = static_cast<double>(rope_position(state, b, state.past_len + t));
                   for (std::int64_t i = 0; i < half; ++i) {
                     const double angle = p * inv_freq[static_cast<std::size_t>(i)];
                     cos_p[static_cast<std::size_t>(i)] = std::cos(angle);
                     sin_p[static_cast<std::size_t>(i)] = std::sin(angle);
                   }
                   for (std::int64_t hd = 0; hd < heads; ++hd) {
                     float* v = xp + (row * heads + hd) * head_dim;
                     for (std::int64_t i = 0; i < half; ++i) {
                       const double a = v[i], b2 = v[i + half];
                       const double c = cos_p[static_cast<std::size_t>(i)], s = sin_p[static_cast<std::size_t>(i)];
                       v[i] = static_cast<float>(a * c - b2 * s);
                       v[i + half] = static_cast<float>(b2 * c + a * s);
                     }
                   }
                 }
               });
}

Tensor llama_embed(const ModelSpec& spec, const LlamaWeights& weights, std::span<const std::int32_t> token_ids,
                   const BatchState& state) {
  check_llama(spec);
  const std::int64_t batch = state.batch_size();
  FLEXGEN_REQUIRE(batch > 0, "embedding: no sequences");
  const std::int64_t count = static_cast<std::int64_t>(token_ids.size());
  FLEXGEN_REQUIRE(count > 0 && count % batch == 0, "embedding: ", count,
                  " token ids is not a positive multiple of the batch size ", batch);
  const std::int64_t tokens = count / batch;
  const std::int64_t h = spec.hidden_size;
  FLEXGEN_REQUIRE(weights.embed_tokens.shape() == Shape({spec.vocab_size, h}), "model weights: embed_tokens has shape ",
                  shape_to_string(weights.embed_tokens.shape()), ", expected ",
                  shape_to_string({spec.vocab_size, h}));
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int32_t id = token_ids[static_cast<std::size_t>(i)];
    FLEXGEN_REQUIRE(id >= 0 && id < spec.vocab_size, "embedding: token id ", id, " of sequence ", i / tokens,
                    " at step position ", state.past_len + i % tokens, " is outside the vocabulary [0, ",
                    spec.vocab_size, ")");
  }
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t last = rope_position(state, b, state.past_len + tokens - 1);
    FLEXGEN_REQUIRE(last < spec.max_positions, "embedding: sequence ", b, " reaches position ", last,
                    ", beyond max_positions ", spec.max_positions);
  }
  Tensor hidden({batch, tokens, h});
  embedding(weights.embed_tokens.span(), spec.vocab_size, h, token_ids, hidden.span());
  return hidden;
}

void llama_attention_projections(const ModelSpec& spec, const LlamaLayerWeights& layer, const Tensor& hidden,
                                 const BatchState& state, Tensor& q, Tensor& k, Tensor& v) {
  const std::int64_t h = spec.hidden_size, kv = spec.kv_dim(), hd = spec.head_dim();
  const std::int64_t batch = hidden.dim(0), tokens = hidden.dim(1);
  const std::int64_t rows = batch * tokens;
  Tensor normed({rows, h});
  rms_norm(hidden.span(), layer.input_norm.span(), rows, h, spec.layer_norm_eps, normed.span());
  q = Tensor({batch, tokens, h});
  k = Tensor({batch, tokens, kv});
  v = Tensor({batch, tokens, kv});
  linear(normed.span(), rows, h, layer.q_weight.span(), {}, h, q.span());
  linear(normed.span(), rows, h, layer.k_weight.span(), {}, kv, k.span());
  linear(normed.span(), rows, h, layer.v_weight.span(), {}, kv, v.span());
  const std::vector<double> inv_freq = rope_inv_freq(spec);
  apply_rotary(q.span(), batch, tokens, spec.num_heads, hd, inv_freq, state);
  apply_rotary(k.span(), batch, tokens, spec.kv_heads(), hd, inv_freq, state);
  scale_inplace(q.span(), static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd))));
}

void llama_attention_output_and_mlp(const ModelSpec& spec, const LlamaLayerWeights& layer, const Tensor& attended,
                                    Tensor& hidden) {
  const std::int64_t h = spec.hidden_size, f = spec.ffn_dim;
  const std::int64_t rows = hidden.numel() / h;
  Tensor projected({rows, h});
  linear(attended.span(), rows, h, layer.o_weight.span(), {}, h, projected.span());
  add_inplace(hidden.span(), projected.span());
  Tensor normed({rows, h});
  rms_norm(hidden.span(), layer.post_norm.span(), rows, h, spec.layer_norm_eps, normed.span());
  Tensor gate({rows, f});
  Tensor up({rows, f});
  linear(normed.span(), rows, h, layer.gate_weight.span(), {}, f, gate.span());
  linear(normed.span(), rows, h, layer.up_weight.span(), {}, f, up.span());
  silu_mul(gate.span(), up.span());
  linear(gate.span(), rows, f, layer.down_weight.span(), {}, h, projected.span());
  add_inplace(hidden.span(), projected.span());
}

void llama_layer_forward(const ModelSpec& spec, const LlamaLayerWeights& layer, Tensor& hidden, LayerKvCache& cache,
                         const BatchState& state) {
  check_llama(spec);
  check_hidden(spec, hidden, "decoder layer");
  const std::int64_t batch = state.batch_size();
  const std::int64_t tokens = hidden.dim(1);
  const std::int64_t kv = spec.kv_dim();
  const std::int64_t past = state.past_len;
  FLEXGEN_REQUIRE(hidden.dim(0) == batch, "decoder layer: hidden states hold ", hidden.dim(0),
                  " sequences, the batch state ", batch);
  FLEXGEN_REQUIRE(cache.key.rank() == 3 && cache.key.dim(0) == batch && cache.key.dim(2) == kv &&
                      cache.value.shape() == cache.key.shape(),
                  "decoder layer: KV cache has key ", shape_to_string(cache.key.shape()), " and value ",
                  shape_to_string(cache.value.shape()), ", expected both [", batch, ", capacity, ", kv, "]");
  FLEXGEN_REQUIRE(cache.length == past, "decoder layer: KV cache holds ", cache.length,
                  " positions but the batch state says ", past);
  const std::int64_t capacity = cache.capacity();
  FLEXGEN_REQUIRE(past + tokens <= capacity, "decoder layer: KV cache capacity ", capacity, " is too small for ",
                  past, " + ", tokens, " positions");

  Tensor q, k, v;
  llama_attention_projections(spec, layer, hidden, state, q, k, v);
  const std::size_t step_bytes = static_cast<std::size_t>(tokens * kv) * sizeof(float);
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t dst = (b * capacity + past) * kv;
    std::memcpy(cache.key.data() + dst, k.data() + b * tokens * kv, step_bytes);
    std::memcpy(cache.value.data() + dst, v.data() + b * tokens * kv, step_bytes);
  }
  AttentionShape shape;
  shape.batch = batch;
  shape.new_tokens = tokens;
  shape.num_heads = spec.num_heads;
  shape.num_kv_heads = spec.kv_heads();
  shape.head_dim = spec.head_dim();
  shape.capacity = capacity;
  shape.past_len = past;
  Tensor attended({batch, tokens, spec.hidden_size});
  attention(q.span(), cache.key.span(), cache.value.span(), state.pad_len, shape, attended.span());
  cache.length = past + tokens;
  llama_attention_output_and_mlp(spec, layer, attended, hidden);
}

Tensor llama_final(const ModelSpec& spec, const LlamaWeights& weights, const Tensor& hidden) {
  check_llama(spec);
  check_hidden(spec, hidden, "LM head");
  const std::int64_t batch = hidden.dim(0), tokens = hidden.dim(1);
  Tensor logits = final_logits(spec, weights, hidden.span(), batch * tokens);
  logits.reshape({batch, tokens, spec.vocab_size});
  return logits;
}

Tensor llama_final_last(const ModelSpec& spec, const LlamaWeights& weights, const Tensor& hidden) {
  check_llama(spec);
  check_hidden(spec, hidden, "LM head");
  const std::int64_t batch = hidden.dim(0), tokens = hidden.dim(1), h = spec.hidden_size;
  Tensor last({batch, h});
  for (std::int64_t b = 0; b < batch; ++b) {
    std::memcpy(last.data() + b * h, hidden.data() + (b * tokens + tokens - 1) * h,
                static_cast<std::size_t>(h) * sizeof(float));
  }
  return final_logits(spec, weights, last.span(), batch);
}

}  // namespace flexgen
