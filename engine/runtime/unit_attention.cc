#include "engine/runtime/unit_attention.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <utility>

namespace flexgen {

float attention_dot(const float* a, const float* b, std::int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  float tail = 0;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

void softmax_combine(const std::vector<float>& scores, const std::vector<std::int64_t>& positions,
                     const float* values, std::int64_t head_dim, float* out) {
  const float top = *std::max_element(scores.begin(), scores.end());
  std::vector<double> weights(scores.size());
  double sum = 0;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    weights[i] = std::exp(static_cast<double>(scores[i] - top));
    sum += weights[i];
  }
  std::vector<double> acc(static_cast<std::size_t>(head_dim), 0.0);
  for (std::size_t i = 0; i < scores.size(); ++i) {
    const float* v = values + positions[i] * head_dim;
    for (std::int64_t c = 0; c < head_dim; ++c) acc[static_cast<std::size_t>(c)] += weights[i] * v[c];
  }
  for (std::int64_t c = 0; c < head_dim; ++c) out[c] = static_cast<float>(acc[static_cast<std::size_t>(c)] / sum);
}


void unit_attention(const float* q, std::int64_t q_stride, const float* keys, const float* values,
                    std::int64_t head_dim, std::int64_t T, std::int64_t past, std::int64_t pad,
                    float* out, std::int64_t out_stride) {
  std::vector<float> scores;
  std::vector<std::int64_t> positions;
  for (std::int64_t t = 0; t < T; ++t) {
    const std::int64_t p = past + t;
    const float* qt = q + t * q_stride;
    scores.clear();
    positions.clear();
    if (p < pad) {
      positions.push_back(p);
      scores.push_back(0.0f);
    } else {
      for (std::int64_t s = pad; s <= p; ++s) {
        positions.push_back(s);
        scores.push_back(attention_dot(qt, keys + s * head_dim, head_dim));
      }
    }
    softmax_combine(scores, positions, values, head_dim, out + t * out_stride);
  }
}

std::vector<std::int64_t> top_k_of_scores(const std::vector<float>& scores, std::int64_t k) {
  const auto past = static_cast<std::int64_t>(scores.size());
  assert(k >= 0 && k <= past);
  // A strict total order (higher score first, then the lower position): its first k are one set,
  // whichever partition finds them.
  std::vector<std::pair<float, std::int64_t>> order(static_cast<std::size_t>(past));
  for (std::int64_t s = 0; s < past; ++s) order[static_cast<std::size_t>(s)] = {scores[static_cast<std::size_t>(s)], s};
  if (k < past) {
    std::nth_element(order.begin(), order.begin() + k, order.end(), [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
  }
  std::vector<std::int64_t> kept(static_cast<std::size_t>(k));
  for (std::int64_t i = 0; i < k; ++i) kept[static_cast<std::size_t>(i)] = order[static_cast<std::size_t>(i)].second;
  std::sort(kept.begin(), kept.end());
  return kept;
}

std::vector<std::int64_t> select_top_k(const float* q, const float* keys, std::int64_t head_dim,
                                       std::int64_t past, std::int64_t pad, std::int64_t k) {
  std::vector<float> scores(static_cast<std::size_t>(past));
  for (std::int64_t s = 0; s < past; ++s) {
    scores[static_cast<std::size_t>(s)] =
        s < pad ? -std::numeric_limits<float>::infinity() : attention_dot(q, keys + s * head_dim, head_dim);
  }
  return top_k_of_scores(scores, k);
}

void sparse_unit_attention(const float* q, const float* keys, const float* values,
                           std::int64_t head_dim, std::int64_t past, std::int64_t pad,
                           const std::vector<std::int64_t>& kept, float* out) {
  std::vector<float> scores;
  std::vector<std::int64_t> positions;
  for (std::int64_t s : kept) {
    if (s < pad) continue;
    positions.push_back(s);
    scores.push_back(attention_dot(q, keys + s * head_dim, head_dim));
  }
  positions.push_back(past);
  scores.push_back(attention_dot(q, keys + past * head_dim, head_dim));
  softmax_combine(scores, positions, values, head_dim, out);
}

}  // namespace flexgen
