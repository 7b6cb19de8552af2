#include "tests/support/opt_reference.h"

#include <algorithm>
#include <cmath>
#include <cstddef>

namespace flexgen::testing {
namespace {

using Vec = std::vector<double>;
using Mat = std::vector<Vec>;  // [rows][cols]

double at(const Tensor& t, std::int64_t i) { return static_cast<double>(t[i]); }

Vec layer_norm_ref(const Vec& x, const Tensor& gamma, const Tensor& beta, double eps) {
  const std::size_t n = x.size();
  double mean = 0.0;
  for (double v : x) mean += v;
  mean /= static_cast<double>(n);
  double var = 0.0;
  for (double v : x) var += (v - mean) * (v - mean);
  var /= static_cast<double>(n);
  Vec y(n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<std::int64_t>(i);
    y[i] = (x[i] - mean) / std::sqrt(var + eps) * at(gamma, c) + at(beta, c);
  }
  return y;
}

// W is [out, in]; y = W x + b (b may be empty).
Vec matvec_ref(const Tensor& w, const Tensor* b, const Vec& x) {
  const std::int64_t out = w.dim(0);
  const std::int64_t in = w.dim(1);
  Vec y(static_cast<std::size_t>(out));
  for (std::int64_t o = 0; o < out; ++o) {
    double s = b ? at(*b, o) : 0.0;
    for (std::int64_t i = 0; i < in; ++i) s += at(w, o * in + i) * x[static_cast<std::size_t>(i)];
    y[static_cast<std::size_t>(o)] = s;
  }
  return y;
}

// One sequence's forward: tokens [L], mask [L] -> logits [L][V].
Mat forward_one(const ModelSpec& spec, const OptWeights& w, const std::vector<std::int32_t>& ids,
                const std::vector<int>& mask, const ReferenceOptions& options) {
  const std::size_t len = ids.size();
  const std::int64_t h = spec.hidden_size;
  const std::int64_t heads = spec.num_heads;
  const std::int64_t d = h / heads;
  const double scaling = 1.0 / std::sqrt(static_cast<double>(d));
  Mat x(len, Vec(static_cast<std::size_t>(h)));
  int cumsum = 0;
  for (std::size_t t = 0; t < len; ++t) {
    cumsum += mask[t];
    const std::int64_t position = static_cast<std::int64_t>(cumsum * mask[t] - 1);
    const std::int64_t row = position + 2;
    for (std::int64_t c = 0; c < h; ++c) {
      x[t][static_cast<std::size_t>(c)] =
          at(w.embed_tokens, ids[t] * h + c) + at(w.embed_positions, row * h + c);
    }
  }
  for (const OptLayerWeights& l : w.layers) {
    Mat q(len), k(len), v(len);
    for (std::size_t t = 0; t < len; ++t) {
      const Vec n = layer_norm_ref(x[t], l.attn_ln_weight, l.attn_ln_bias, spec.layer_norm_eps);
      q[t] = matvec_ref(l.q_weight, &l.q_bias, n);
      for (double& e : q[t]) e *= scaling;
      k[t] = matvec_ref(l.k_weight, &l.k_bias, n);
      v[t] = matvec_ref(l.v_weight, &l.v_bias, n);
      if (options.kv_row_transform) {
        for (std::int64_t head = 0; head < heads; ++head) {
          for (Vec* kv : {&k[t], &v[t]}) {
            Vec row(kv->begin() + head * d, kv->begin() + (head + 1) * d);
            options.kv_row_transform(row);
            std::copy(row.begin(), row.end(), kv->begin() + head * d);
          }
        }
      }
    }
    for (std::size_t t = 0; t < len; ++t) {
      Vec attended(static_cast<std::size_t>(h), 0.0);
      for (std::int64_t head = 0; head < heads; ++head) {
        const auto off = static_cast<std::size_t>(head * d);
        Vec scores(len);
        for (std::size_t s = 0; s < len; ++s) {
          double dotp = 0.0;
          for (std::size_t c = 0; c < static_cast<std::size_t>(d); ++c) {
            dotp += q[t][off + c] * k[s][off + c];
          }
          const bool visible = s <= t && mask[s] == 1;
          scores[s] = dotp + (visible ? 0.0 : -1e30);
        }
        // Top-k sparse attention for generated positions: keep the k best real positions before t
        // (k = max(1, floor(sparsity * t)); padding last, ties to the lower position) and t itself.
        if (options.attn_sparsity < 1.0 && t >= options.first_decode_position) {
          const std::size_t keep = std::max<std::size_t>(
              1, static_cast<std::size_t>(std::floor(options.attn_sparsity * static_cast<double>(t))));
          std::vector<std::size_t> order(t);
          for (std::size_t s = 0; s < t; ++s) order[s] = s;
          std::stable_sort(order.begin(), order.end(),
                           [&](std::size_t a, std::size_t b2) { return scores[a] > scores[b2]; });
          std::vector<bool> kept(len, false);
          for (std::size_t i = 0; i < keep; ++i) kept[order[i]] = true;
          kept[t] = true;
          for (std::size_t s = 0; s < len; ++s) {
            if (!kept[s]) scores[s] = -1e30;
          }
        }
        const double mx = *std::max_element(scores.begin(), scores.end());
        double sum = 0.0;
        for (double& e : scores) {
          e = std::exp(e - mx);
          sum += e;
        }
        for (std::size_t s = 0; s < len; ++s) {
          for (std::size_t c = 0; c < static_cast<std::size_t>(d); ++c) {
            attended[off + c] += scores[s] / sum * v[s][off + c];
          }
        }
      }
      const Vec o = matvec_ref(l.out_weight, &l.out_bias, attended);
      for (std::size_t c = 0; c < static_cast<std::size_t>(h); ++c) x[t][c] += o[c];
    }
    for (std::size_t t = 0; t < len; ++t) {
      const Vec n = layer_norm_ref(x[t], l.mlp_ln_weight, l.mlp_ln_bias, spec.layer_norm_eps);
      Vec f = matvec_ref(l.fc1_weight, &l.fc1_bias, n);
      for (double& e : f) e = std::max(e, 0.0);
      const Vec o = matvec_ref(l.fc2_weight, &l.fc2_bias, f);
      for (std::size_t c = 0; c < static_cast<std::size_t>(h); ++c) x[t][c] += o[c];
    }
  }
  Mat logits(len);
  for (std::size_t t = 0; t < len; ++t) {
    const Vec n = layer_norm_ref(x[t], w.final_ln_weight, w.final_ln_bias, spec.layer_norm_eps);
    logits[t] = matvec_ref(w.embed_tokens, nullptr, n);
  }
  return logits;
}

}  // namespace

Logits3 reference_opt_logits(const ModelSpec& spec, const OptWeights& weights,
                             const std::vector<std::vector<std::int32_t>>& ids,
                             const std::vector<std::vector<int>>& mask, const ReferenceOptions& options) {
  Logits3 out;
  for (std::size_t b = 0; b < ids.size(); ++b)
    out.push_back(forward_one(spec, weights, ids[b], mask[b], options));
  return out;
}

void reference_left_pad(const ModelSpec& spec,
                        const std::vector<std::vector<std::int32_t>>& sequences,
                        std::vector<std::vector<std::int32_t>>& ids,
                        std::vector<std::vector<int>>& mask) {
  std::size_t longest = 0;
  for (const auto& s : sequences) longest = std::max(longest, s.size());
  ids.assign(sequences.size(), {});
  mask.assign(sequences.size(), {});
  for (std::size_t b = 0; b < sequences.size(); ++b) {
    const std::size_t pad = longest - sequences[b].size();
    ids[b].assign(pad, static_cast<std::int32_t>(spec.pad_token_id));
    ids[b].insert(ids[b].end(), sequences[b].begin(), sequences[b].end());
    mask[b].assign(pad, 0);
    mask[b].resize(longest, 1);
  }
}

std::vector<std::vector<double>> teacher_forced_deficits(const ModelSpec& spec,
                                                         const std::vector<std::vector<std::int32_t>>& prompts,
                                                         const std::vector<std::vector<std::int32_t>>& generated,
                                                         ReferenceOptions options, const ReferenceLogits& logits) {
  std::size_t longest = 0;
  std::vector<std::vector<std::int32_t>> sequences;
  for (std::size_t s = 0; s < generated.size(); ++s) {
    longest = std::max(longest, prompts[s].size());
    sequences.push_back(prompts[s]);
    sequences.back().insert(sequences.back().end(), generated[s].begin(), generated[s].end());
  }
  std::vector<std::vector<std::int32_t>> ids;
  std::vector<std::vector<int>> mask;
  reference_left_pad(spec, sequences, ids, mask);
  options.first_decode_position = longest;
  const Logits3 all = logits(ids, mask, options);
  std::vector<std::vector<double>> out(generated.size());
  for (std::size_t s = 0; s < generated.size(); ++s) {
    for (std::size_t i = 0; i < generated[s].size(); ++i) {
      const std::vector<double>& row = all[s][longest - 1 + i];
      out[s].push_back(*std::max_element(row.begin(), row.end()) - row[static_cast<std::size_t>(generated[s][i])]);
    }
  }
  return out;
}

std::vector<std::vector<std::int32_t>> reference_greedy(
    const ModelSpec& spec, const OptWeights& weights,
    const std::vector<std::vector<std::int32_t>>& prompts, int new_tokens,
    const ReferenceOptions& options) {
  std::vector<std::vector<std::int32_t>> sequences = prompts;
  std::size_t longest = 0;
  for (const auto& p : prompts) longest = std::max(longest, p.size());
  ReferenceOptions step_options = options;
  step_options.first_decode_position = longest;
  std::vector<std::vector<std::int32_t>> generated(prompts.size());
  for (int step = 0; step < new_tokens; ++step) {
    std::vector<std::vector<std::int32_t>> ids;
    std::vector<std::vector<int>> mask;
    reference_left_pad(spec, sequences, ids, mask);
    const Logits3 logits = reference_opt_logits(spec, weights, ids, mask, step_options);
    for (std::size_t b = 0; b < prompts.size(); ++b) {
      const std::vector<double>& row = logits[b].back();
      std::size_t best = 0;
      for (std::size_t i = 1; i < row.size(); ++i) {
        if (row[i] > row[best]) best = i;
      }
      generated[b].push_back(static_cast<std::int32_t>(best));
      sequences[b].push_back(static_cast<std::int32_t>(best));
    }
  }
  return generated;
}

}  // namespace flexgen::testing
