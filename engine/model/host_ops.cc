#include "engine/model/host_ops.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "engine/core/error.h"
#include "engine/core/parallel.h"

namespace flexgen {
namespace {

// Work (multiply-adds) below which splitting a loop across threads costs more than it saves.
constexpr std::int64_t kMinParallelWork = std::int64_t{1} << 15;

// Dot products of R rows of x with one row w, n values each. Each row keeps eight interleaved
// partial sums (lane l holds the terms i = l mod 8, in increasing i), combined pairwise in a
// fixed tree, then the tail i >= 8 * (n / 8) added in order. The per-row arithmetic is the same
// for every R, so a row's result does not depend on which tile it falls in; R rows share each
// load of w.
#if defined(__GNUC__) || defined(__clang__)
// Four-lane vectors (GCC/Clang vector extensions: elementwise IEEE operations, no reordering)
// keep the partial sums in registers; lanes 0-3 in lo, 4-7 in hi.
typedef float Float4 __attribute__((vector_size(16)));

inline Float4 load4(const float* p) {
  Float4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <int R>
inline void dot_rows(const float* const* xs, const float* w, std::int64_t n, float* results) {
  Float4 lo[R];
  Float4 hi[R];
  for (int r = 0; r < R; ++r) {
    lo[r] = Float4{0.0f, 0.0f, 0.0f, 0.0f};
    hi[r] = lo[r];
  }
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const Float4 w_lo = load4(w + i);
    const Float4 w_hi = load4(w + i + 4);
    for (int r = 0; r < R; ++r) {
      lo[r] += load4(xs[r] + i) * w_lo;
      hi[r] += load4(xs[r] + i + 4) * w_hi;
    }
  }
  for (int r = 0; r < R; ++r) {
    float tail = 0.0f;
    for (std::int64_t j = i; j < n; ++j) tail += xs[r][j] * w[j];
    const Float4 a = lo[r];
    const Float4 b = hi[r];
    results[r] = (((a[0] + a[1]) + (a[2] + a[3])) + ((b[0] + b[1]) + (b[2] + b[3]))) + tail;
  }
}
#else
template <int R>
inline void dot_rows(const float* const* xs, const float* w, std::int64_t n, float* results) {
  constexpr int kLanes = 8;
  float acc[R][kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int r = 0; r < R; ++r) {
      const float* x = xs[r] + i;
      for (int l = 0; l < kLanes; ++l) acc[r][l] += x[l] * w[i + l];
    }
  }
  for (int r = 0; r < R; ++r) {
    float tail = 0.0f;
    for (std::int64_t j = i; j < n; ++j) tail += xs[r][j] * w[j];
    const float* a = acc[r];
    results[r] = (((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))) + tail;
  }
}
#endif

inline float dot(const float* x, const float* w, std::int64_t n) {
  float result;
  dot_rows<1>(&x, w, n, &result);
  return result;
}

void softmax_row(float* x, std::int64_t n) {
  float max_value = -std::numeric_limits<float>::infinity();
  for (std::int64_t i = 0; i < n; ++i) max_value = std::max(max_value, x[i]);
  assert(std::isfinite(max_value));
  double sum = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max_value);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (std::int64_t i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace

void layer_norm(std::span<const float> x, std::span<const float> gamma, std::span<const float> beta,
                std::int64_t rows, std::int64_t cols, double eps, std::span<float> y) {
  assert(static_cast<std::int64_t>(x.size()) == rows * cols);
  assert(static_cast<std::int64_t>(y.size()) == rows * cols);
  assert(static_cast<std::int64_t>(gamma.size()) == cols);
  assert(static_cast<std::int64_t>(beta.size()) == cols);
  const float* xp = x.data();
  float* yp = y.data();
  const float* g = gamma.data();
  const float* b = beta.data();
  parallel_for(rows, std::max<std::int64_t>(1, kMinParallelWork / std::max<std::int64_t>(cols, 1)),
               [=](std::int64_t begin, std::int64_t end) {
                 for (std::int64_t r = begin; r < end; ++r) {
                   const float* xr = xp + r * cols;
                   float* yr = yp + r * cols;
                   double sum = 0.0;
                   for (std::int64_t c = 0; c < cols; ++c) sum += xr[c];
                   const double mean = sum / static_cast<double>(cols);
                   double sq = 0.0;
                   for (std::int64_t c = 0; c < cols; ++c) {
                     const double d = xr[c] - mean;
                     sq += d * d;
                   }
                   const double inv_std = 1.0 / std::sqrt(sq / static_cast<double>(cols) + eps);
                   for (std::int64_t c = 0; c < cols; ++c) {
                     yr[c] = static_cast<float>((xr[c] - mean) * inv_std * g[c] + b[c]);
                   }
                 }
               });
}

void linear(std::span<const float> x, std::int64_t rows, std::int64_t in_features,
            std::span<const float> weight, std::span<const float> bias, std::int64_t out_features,
            std::span<float> y) {
  assert(static_cast<std::int64_t>(x.size()) == rows * in_features);
  assert(static_cast<std::int64_t>(weight.size()) == out_features * in_features);
  assert(bias.empty() || static_cast<std::int64_t>(bias.size()) == out_features);
  assert(static_cast<std::int64_t>(y.size()) == rows * out_features);
  if (rows == 0 || out_features == 0) return;
  // Output features in blocks small enough for their weight rows to stay in cache while every row
  // tile of x streams past them; rows in tiles of four that share each weight load.
  constexpr std::int64_t kOutBlock = 16;
  constexpr std::int64_t kRowTile = 4;
  const std::int64_t num_blocks = (out_features + kOutBlock - 1) / kOutBlock;
  const std::int64_t block_work = std::max<std::int64_t>(1, rows * in_features * kOutBlock);
  const float* xp = x.data();
  const float* wp = weight.data();
  const float* bp = bias.empty() ? nullptr : bias.data();
  float* yp = y.data();
  const std::int64_t in = in_features;
  const std::int64_t out = out_features;
  parallel_for(num_blocks, std::max<std::int64_t>(1, kMinParallelWork / block_work),
               [=](std::int64_t block_begin, std::int64_t block_end) {
                 for (std::int64_t blk = block_begin; blk < block_end; ++blk) {
                   const std::int64_t o_begin = blk * kOutBlock;
                   const std::int64_t o_end = std::min(out, o_begin + kOutBlock);
                   std::int64_t r = 0;
                   for (; r + kRowTile <= rows; r += kRowTile) {
                     const float* xs[kRowTile] = {xp + r * in, xp + (r + 1) * in, xp + (r + 2) * in,
                                                  xp + (r + 3) * in};
                     for (std::int64_t o = o_begin; o < o_end; ++o) {
                       float res[kRowTile];
                       dot_rows<kRowTile>(xs, wp + o * in, in, res);
                       const float b = bp ? bp[o] : 0.0f;
                       for (std::int64_t k = 0; k < kRowTile; ++k)
                         yp[(r + k) * out + o] = res[k] + b;
                     }
                   }
                   for (; r < rows; ++r) {
                     const float* xr = xp + r * in;
                     for (std::int64_t o = o_begin; o < o_end; ++o) {
                       yp[r * out + o] = dot(xr, wp + o * in, in) + (bp ? bp[o] : 0.0f);
                     }
                   }
                 }
               });
}

void relu(std::span<float> x) {
  for (float& v : x) v = v > 0.0f ? v : 0.0f;
}

void add_inplace(std::span<float> x, std::span<const float> y) {
  assert(x.size() == y.size());
  for (std::size_t i = 0; i < x.size(); ++i) x[i] += y[i];
}

void scale_inplace(std::span<float> x, float factor) {
  for (float& v : x) v *= factor;
}

void softmax(std::span<float> row) {
  assert(!row.empty());
  softmax_row(row.data(), static_cast<std::int64_t>(row.size()));
}

void embedding(std::span<const float> table, std::int64_t table_rows, std::int64_t cols,
               std::span<const std::int32_t> ids, std::span<float> out) {
  assert(static_cast<std::int64_t>(table.size()) == table_rows * cols);
  assert(out.size() == ids.size() * static_cast<std::size_t>(cols));
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::int64_t id = ids[i];
    FLEXGEN_REQUIRE(id >= 0 && id < table_rows, "embedding: id ", id, " at index ", i,
                    " is outside the table's rows [0, ", table_rows, ")");
    std::memcpy(out.data() + i * static_cast<std::size_t>(cols), table.data() + id * cols,
                static_cast<std::size_t>(cols) * sizeof(float));
  }
}

void attention(std::span<const float> q, std::span<const float> key, std::span<const float> value,
               std::span<const std::int64_t> pad_len, const AttentionShape& shape,
               std::span<float> out) {
  const std::int64_t batch = shape.batch;
  const std::int64_t tokens = shape.new_tokens;
  const std::int64_t heads = shape.num_heads;
  const std::int64_t d = shape.head_dim;
  const std::int64_t hidden = heads * d;
  const std::int64_t kv_heads = shape.num_kv_heads > 0 ? shape.num_kv_heads : heads;
  const std::int64_t kv_hidden = kv_heads * d;
  const std::int64_t group = heads / kv_heads;
  const std::int64_t capacity = shape.capacity;
  const std::int64_t past = shape.past_len;
  assert(heads % kv_heads == 0);
  assert(static_cast<std::int64_t>(q.size()) == batch * tokens * hidden);
  assert(static_cast<std::int64_t>(out.size()) == batch * tokens * hidden);
  assert(static_cast<std::int64_t>(key.size()) == batch * capacity * kv_hidden);
  assert(static_cast<std::int64_t>(value.size()) == batch * capacity * kv_hidden);
  assert(static_cast<std::int64_t>(pad_len.size()) == batch);
  assert(past >= 0 && past + tokens <= capacity);
  const float* qp = q.data();
  const float* kp = key.data();
  const float* vp = value.data();
  const std::int64_t* pads = pad_len.data();
  float* op = out.data();
  // One work item per (sequence, query, head), in that order.
  const std::int64_t items = batch * tokens * heads;
  const std::int64_t item_work = std::max<std::int64_t>(1, (past + tokens) * d * 2);
  parallel_for(
      items, std::max<std::int64_t>(1, kMinParallelWork / item_work),
      [=](std::int64_t begin, std::int64_t end) {
        std::vector<float> scores(static_cast<std::size_t>(past + tokens));
        for (std::int64_t item = begin; item < end; ++item) {
          const std::int64_t head = item % heads;
          const std::int64_t t = (item / heads) % tokens;
          const std::int64_t b = item / (heads * tokens);
          const std::int64_t pos = past + t;
          const std::int64_t column = head * d;
          const float* qv = qp + (b * tokens + t) * hidden + column;
          float* ov = op + (b * tokens + t) * hidden + column;
          const std::int64_t kv_column = (head / group) * d;
          const float* k_rows = kp + b * capacity * kv_hidden + kv_column;
          const float* v_rows = vp + b * capacity * kv_hidden + kv_column;
          const std::int64_t first = pads[b];
          if (pos < first) {  // a padding query: its own value row
            std::memcpy(ov, v_rows + pos * kv_hidden, static_cast<std::size_t>(d) * sizeof(float));
            continue;
          }
          const std::int64_t n = pos - first + 1;
          for (std::int64_t s = 0; s < n; ++s) {
            scores[static_cast<std::size_t>(s)] = dot(qv, k_rows + (first + s) * kv_hidden, d);
          }
          softmax_row(scores.data(), n);
          std::fill(ov, ov + d, 0.0f);
          for (std::int64_t s = 0; s < n; ++s) {
            const float w = scores[static_cast<std::size_t>(s)];
            const float* vr = v_rows + (first + s) * kv_hidden;
            for (std::int64_t c = 0; c < d; ++c) ov[c] += w * vr[c];
          }
        }
      });
}

}  // namespace flexgen
