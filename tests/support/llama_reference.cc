#include "tests/support/llama_reference.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numbers>

namespace flexgen::testing {
namespace {

using Vec = std::vector<double>;
using Mat = std::vector<Vec>;

double at(const Tensor& t, std::int64_t i) { return static_cast<double>(t[i]); }

Vec rms_norm_ref(const Vec& x, const Tensor& weight, double eps) {
  double ms = 0.0;
  for (double v : x) ms += v * v;
  ms /= static_cast<double>(x.size());
  const double r = 1.0 / std::sqrt(ms + eps);
  Vec y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] * r * at(weight, static_cast<std::int64_t>(i));
  return y;
}

Vec matvec(const Tensor& w, const Vec& x) {
  const std::int64_t out = w.dim(0), in = w.dim(1);
  Vec y(static_cast<std::size_t>(out), 0.0);
  for (std::int64_t o = 0; o < out; ++o) {
    double s = 0.0;
    for (std::int64_t i = 0; i < in; ++i) s += at(w, o * in + i) * x[static_cast<std::size_t>(i)];
    y[static_cast<std::size_t>(o)] = s;
  }
  return y;
}

// theta^(-2i/d) for i < d/2, scaled as HF's rope initialisers do.
Vec frequencies(const ModelSpec& spec) {
  const std::int64_t d = spec.hidden_size / spec.num_heads;
  Vec f(static_cast<std::size_t>(d / 2));
  for (std::size_t i = 0; i < f.size(); ++i) {
    f[i] = std::pow(spec.rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(d));
  }
  const RopeScaling& r = spec.rope_scaling;
  for (double& x : f) {
    if (r.type == RopeScalingType::kLinear) {
      x = x / r.factor;
    } else if (r.type == RopeScalingType::kLlama3) {
      const double wavelength = 2.0 * std::numbers::pi / x;
      const double old_len = static_cast<double>(r.original_max_positions);
      if (wavelength > old_len / r.low_freq_factor) {
        x = x / r.factor;
      } else if (wavelength >= old_len / r.high_freq_factor) {
        const double smooth = (old_len / wavelength - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
        x = (1.0 - smooth) * x / r.factor + smooth * x;
      }
    }
  }
  return f;
}

// Rotates every head of v (heads * d values) for position p.
void rotate(Vec& v, std::int64_t heads, std::int64_t d, double p, const Vec& freq) {
  for (std::int64_t h = 0; h < heads; ++h) {
    for (std::int64_t i = 0; i < d / 2; ++i) {
      const auto a = static_cast<std::size_t>(h * d + i), b = static_cast<std::size_t>(h * d + i + d / 2);
      const double angle = p * freq[static_cast<std::size_t>(i)];
      const double x1 = v[a], x2 = v[b];
      v[a] = x1 * std::cos(angle) - x2 * std::sin(angle);
      v[b] = x2 * std::cos(angle) + x1 * std::sin(angle);
    }
  }
}

Mat forward_one(const ModelSpec& spec, const LlamaWeights& w, const std::vector<std::int32_t>& ids,
                const std::vector<int>& mask, const ReferenceOptions& options) {
  const std::size_t len = ids.size();
  const std::int64_t h = spec.hidden_size;
  const std::int64_t heads = spec.num_heads;
  const std::int64_t kv_heads = spec.num_kv_heads > 0 ? spec.num_kv_heads : heads;
  const std::int64_t d = h / heads;
  const std::int64_t group = heads / kv_heads;
  const double scaling = 1.0 / std::sqrt(static_cast<double>(d));
  const Vec freq = frequencies(spec);
  std::vector<double> position(len);
  int cumsum = 0;
  for (std::size_t t = 0; t < len; ++t) {
    cumsum += mask[t];
    position[t] = mask[t] ? static_cast<double>(cumsum - 1) : 0.0;
  }
  Mat x(len, Vec(static_cast<std::size_t>(h)));
  for (std::size_t t = 0; t < len; ++t) {
    for (std::int64_t c = 0; c < h; ++c) x[t][static_cast<std::size_t>(c)] = at(w.embed_tokens, ids[t] * h + c);
  }
  for (const LlamaLayerWeights& l : w.layers) {
    Mat q(len), k(len), v(len);
    for (std::size_t t = 0; t < len; ++t) {
      const Vec n = rms_norm_ref(x[t], l.input_norm, spec.layer_norm_eps);
      q[t] = matvec(l.q_weight, n);
      k[t] = matvec(l.k_weight, n);
      v[t] = matvec(l.v_weight, n);
      rotate(q[t], heads, d, position[t], freq);
      rotate(k[t], kv_heads, d, position[t], freq);
      if (options.kv_row_transform) {
        for (std::int64_t j = 0; j < kv_heads; ++j) {
          for (Vec* kv : {&k[t], &v[t]}) {
            Vec row(kv->begin() + j * d, kv->begin() + (j + 1) * d);
            options.kv_row_transform(row);
            std::copy(row.begin(), row.end(), kv->begin() + j * d);
          }
        }
      }
    }
    for (std::size_t t = 0; t < len; ++t) {
      Vec attended(static_cast<std::size_t>(h), 0.0);
      const bool sparse = options.attn_sparsity < 1.0 && t >= options.first_decode_position;
      for (std::int64_t j = 0; j < kv_heads; ++j) {
        const auto kv_off = static_cast<std::size_t>(j * d);
        auto score = [&](std::int64_t head, std::size_t s) {
          double dotp = 0.0;
          const auto q_off = static_cast<std::size_t>(head * d);
          for (std::size_t c = 0; c < static_cast<std::size_t>(d); ++c) dotp += q[t][q_off + c] * k[s][kv_off + c];
          return dotp * scaling;
        };
        std::vector<bool> kept(len, true);
        if (sparse) {
          // The group's summed score decides which positions this key/value head keeps.
          std::vector<double> summed(t, 0.0);
          for (std::size_t s = 0; s < t; ++s) {
            for (std::int64_t i = 0; i < group; ++i) summed[s] += score(j * group + i, s);
            if (mask[s] == 0) summed[s] = -1e300;
          }
          const std::size_t keep = std::max<std::size_t>(
              1, static_cast<std::size_t>(std::floor(options.attn_sparsity * static_cast<double>(t))));
          std::vector<std::size_t> order(t);
          for (std::size_t s = 0; s < t; ++s) order[s] = s;
          std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return summed[a] > summed[b]; });
          std::fill(kept.begin(), kept.end(), false);
          for (std::size_t i = 0; i < keep && i < order.size(); ++i) kept[order[i]] = true;
          kept[t] = true;
        }
        for (std::int64_t i = 0; i < group; ++i) {
          const std::int64_t head = j * group + i;
          Vec scores(len);
          for (std::size_t s = 0; s < len; ++s) {
            const bool visible = s <= t && mask[s] == 1 && kept[s];
            scores[s] = score(head, s) + (visible ? 0.0 : -1e30);
          }
          const double mx = *std::max_element(scores.begin(), scores.end());
          double sum = 0.0;
          for (double& e : scores) {
            e = std::exp(e - mx);
            sum += e;
          }
          const auto off = static_cast<std::size_t>(head * d);
          for (std::size_t s = 0; s < len; ++s) {
            for (std::size_t c = 0; c < static_cast<std::size_t>(d); ++c) {
              attended[off + c] += scores[s] / sum * v[s][kv_off + c];
            }
          }
        }
      }
      const Vec o = matvec(l.o_weight, attended);
      for (std::size_t c = 0; c < static_cast<std::size_t>(h); ++c) x[t][c] += o[c];
    }
    for (std::size_t t = 0; t < len; ++t) {
      const Vec n = rms_norm_ref(x[t], l.post_norm, spec.layer_norm_eps);
      const Vec gate = matvec(l.gate_weight, n);
      const Vec up = matvec(l.up_weight, n);
      Vec act(gate.size());
      for (std::size_t i = 0; i < gate.size(); ++i) act[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
      const Vec o = matvec(l.down_weight, act);
      for (std::size_t c = 0; c < static_cast<std::size_t>(h); ++c) x[t][c] += o[c];
    }
  }
  const Tensor& head = spec.tie_word_embeddings ? w.embed_tokens : w.lm_head;
  Mat logits(len);
  for (std::size_t t = 0; t < len; ++t) logits[t] = matvec(head, rms_norm_ref(x[t], w.final_norm, spec.layer_norm_eps));
  return logits;
}

}  // namespace

Logits3 reference_llama_logits(const ModelSpec& spec, const LlamaWeights& weights,
                               const std::vector<std::vector<std::int32_t>>& ids,
                               const std::vector<std::vector<int>>& mask, const ReferenceOptions& options) {
  Logits3 out;
  for (std::size_t b = 0; b < ids.size(); ++b) out.push_back(forward_one(spec, weights, ids[b], mask[b], options));
  return out;
}

std::vector<std::vector<std::int32_t>> reference_llama_greedy(const ModelSpec& spec, const LlamaWeights& weights,
                                                              const std::vector<std::vector<std::int32_t>>& prompts,
                                                              int new_tokens, const ReferenceOptions& options,
                                                              std::vector<std::vector<double>>* margins) {
  std::vector<std::vector<std::int32_t>> sequences = prompts;
  std::size_t longest = 0;
  for (const auto& p : prompts) longest = std::max(longest, p.size());
  ReferenceOptions step_options = options;
  step_options.first_decode_position = longest;
  std::vector<std::vector<std::int32_t>> generated(prompts.size());
  if (margins != nullptr) margins->assign(prompts.size(), {});
  for (int step = 0; step < new_tokens; ++step) {
    std::vector<std::vector<std::int32_t>> ids;
    std::vector<std::vector<int>> mask;
    reference_left_pad(spec, sequences, ids, mask);
    const Logits3 logits = reference_llama_logits(spec, weights, ids, mask, step_options);
    for (std::size_t b = 0; b < prompts.size(); ++b) {
      const Vec& row = logits[b].back();
      std::size_t best = 0;
      for (std::size_t i = 1; i < row.size(); ++i) {
        if (row[i] > row[best]) best = i;
      }
      if (margins != nullptr) {
        double second = -1e300;
        for (std::size_t i = 0; i < row.size(); ++i) {
          if (i != best) second = std::max(second, row[i]);
        }
        (*margins)[b].push_back(row[best] - second);
      }
      generated[b].push_back(static_cast<std::int32_t>(best));
      sequences[b].push_back(static_cast<std::int32_t>(best));
    }
  }
  return generated;
}

}  // namespace flexgen::testing
