#include "engine/runtime/cpu_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "engine/compress/quant4.h"
#include "engine/core/parallel.h"
#include "engine/runtime/unit_attention.h"
#include "engine/tensor/tensor.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace flexgen {

namespace {

float dot_scalar(const float* q, const std::uint16_t* k, std::int64_t n) {
  float s = 0.0f;
  for (std::int64_t d = 0; d < n; ++d) s += q[d] * half_to_float(k[d]);
  return s;
}
void axpy_scalar(float w, const std::uint16_t* v, float* acc, std::int64_t n) {
  for (std::int64_t d = 0; d < n; ++d) acc[d] += w * half_to_float(v[d]);
}

#if defined(__x86_64__)
// n % 8 == 0.
__attribute__((target("avx2,fma,f16c"))) float dot_f16c(const float* q, const std::uint16_t* k, std::int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  for (std::int64_t d = 0; d < n; d += 8) {
    const __m256 kv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k + d)));
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), kv, acc);
  }
  const __m128 lo = _mm256_castps256_ps128(acc), hi = _mm256_extractf128_ps(acc, 1);
  __m128 s = _mm_add_ps(lo, hi);
  s = _mm_hadd_ps(s, s);
  s = _mm_hadd_ps(s, s);
  return _mm_cvtss_f32(s);
}
__attribute__((target("avx2,fma,f16c"))) void axpy_f16c(float w, const std::uint16_t* v, float* acc, std::int64_t n) {
  const __m256 wv = _mm256_set1_ps(w);
  for (std::int64_t d = 0; d < n; d += 8) {
    const __m256 x = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v + d)));
    _mm256_storeu_ps(acc + d, _mm256_fmadd_ps(wv, x, _mm256_loadu_ps(acc + d)));
  }
}
bool have_f16c() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
  return has;
}
#else
float dot_f16c(const float* q, const std::uint16_t* k, std::int64_t n) { return dot_scalar(q, k, n); }
void axpy_f16c(float w, const std::uint16_t* v, float* acc, std::int64_t n) { axpy_scalar(w, v, acc, n); }
bool have_f16c() { return false; }
#endif

void append_row(const CpuAttentionBatch& a, std::byte* base, const std::uint16_t* row, std::int64_t i) {
  std::byte* dst = base + (a.past * a.units + i) * a.row_bytes;
  if (!a.compressed) {
    std::memcpy(dst, row, static_cast<std::size_t>(a.head_dim) * 2);
    return;
  }
  std::vector<float> x(static_cast<std::size_t>(a.head_dim));
  for (std::int64_t d = 0; d < a.head_dim; ++d) x[static_cast<std::size_t>(d)] = half_to_float(row[d]);
  quantize(x, Shape{1, a.head_dim}, cache_quant_spec(ScaleType::kFloat16),
           std::span<std::byte>(dst, static_cast<std::size_t>(a.row_bytes)));
}

void decode_row(const CpuAttentionBatch& a, const std::byte* src, float* out) {
  if (a.compressed) {
    dequantize(std::span<const std::byte>(src, static_cast<std::size_t>(a.row_bytes)), Shape{1, a.head_dim},
               cache_quant_spec(ScaleType::kFloat16), std::span<float>(out, static_cast<std::size_t>(a.head_dim)));
  } else {
    const auto* h = reinterpret_cast<const std::uint16_t*>(src);
    for (std::int64_t d = 0; d < a.head_dim; ++d) out[d] = half_to_float(h[d]);
  }
}

// 4-bit rows or sparse attention: each unit's rows decoded to float32, the unit_attention.h
// functions on them.
void attend_generic(const CpuAttentionBatch& a) {
  const std::int64_t hd = a.head_dim, positions = a.past + 1;
  parallel_for(a.units, 1, [&](std::int64_t begin, std::int64_t end) {
    std::vector<float> keys(static_cast<std::size_t>(positions * hd)), values(keys.size()), q(static_cast<std::size_t>(hd)),
        out(static_cast<std::size_t>(hd));
    for (std::int64_t i = begin; i < end; ++i) {
      const std::int64_t pad = a.pad_len[static_cast<std::size_t>((a.unit0 + i) / a.num_heads)];
      for (std::int64_t p = 0; p < positions; ++p) {
        decode_row(a, a.keys + (p * a.units + i) * a.row_bytes, keys.data() + p * hd);
        decode_row(a, a.values + (p * a.units + i) * a.row_bytes, values.data() + p * hd);
      }
      for (std::int64_t d = 0; d < hd; ++d) q[static_cast<std::size_t>(d)] = half_to_float(a.query[i * hd + d]);
      if (a.kept > 0) {
        const auto kept = select_top_k(q.data(), keys.data(), hd, a.past, pad, a.kept);
        sparse_unit_attention(q.data(), keys.data(), values.data(), hd, a.past, pad, kept, out.data());
      } else {
        unit_attention(q.data(), hd, keys.data(), values.data(), hd, 1, a.past, pad, out.data(), hd);
      }
      for (std::int64_t d = 0; d < hd; ++d) a.out[i * hd + d] = float_to_half(out[static_cast<std::size_t>(d)]);
    }
  });
}

// Dense fp16: threads take contiguous ranges of units and stream the positions in home order.
void attend_dense_f16(const CpuAttentionBatch& a) {
  const std::int64_t hd = a.head_dim, positions = a.past + 1;
  const bool fast = have_f16c() && hd % 8 == 0;
  const std::int64_t row = a.row_bytes / 2;  // fp16 elements per row
  const auto* keys = reinterpret_cast<const std::uint16_t*>(a.keys);
  const auto* values = reinterpret_cast<const std::uint16_t*>(a.values);
  const std::int64_t grain = std::max<std::int64_t>(1, a.units / (4 * static_cast<std::int64_t>(parallel_threads())));
  parallel_for(a.units, grain, [&](std::int64_t begin, std::int64_t end) {
    const std::int64_t n = end - begin;
    std::vector<float> q(static_cast<std::size_t>(n * hd)), acc(static_cast<std::size_t>(n * hd), 0.0f),
        score(static_cast<std::size_t>(n * positions)), mx(static_cast<std::size_t>(n), -std::numeric_limits<float>::infinity()),
        sum(static_cast<std::size_t>(n), 0.0f);
    std::vector<std::int64_t> pad(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
      pad[static_cast<std::size_t>(i)] = a.pad_len[static_cast<std::size_t>((a.unit0 + begin + i) / a.num_heads)];
      for (std::int64_t d = 0; d < hd; ++d) q[static_cast<std::size_t>(i * hd + d)] = half_to_float(a.query[(begin + i) * hd + d]);
    }
    for (std::int64_t p = 0; p < positions; ++p) {
      const std::uint16_t* r = keys + (p * a.units + begin) * row;
      for (std::int64_t i = 0; i < n; ++i) {
        if (p < pad[static_cast<std::size_t>(i)]) continue;
        const float s = fast ? dot_f16c(q.data() + i * hd, r + i * row, hd) : dot_scalar(q.data() + i * hd, r + i * row, hd);
        score[static_cast<std::size_t>(i * positions + p)] = s;
        mx[static_cast<std::size_t>(i)] = std::max(mx[static_cast<std::size_t>(i)], s);
      }
    }
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t p = pad[static_cast<std::size_t>(i)]; p < positions; ++p) {
        float& s = score[static_cast<std::size_t>(i * positions + p)];
        s = std::exp(s - mx[static_cast<std::size_t>(i)]);
        sum[static_cast<std::size_t>(i)] += s;
      }
    }
    for (std::int64_t p = 0; p < positions; ++p) {
      const std::uint16_t* r = values + (p * a.units + begin) * row;
      for (std::int64_t i = 0; i < n; ++i) {
        if (p < pad[static_cast<std::size_t>(i)]) continue;
        const float w = score[static_cast<std::size_t>(i * positions + p)];
        if (fast) {
          axpy_f16c(w, r + i * row, acc.data() + i * hd, hd);
        } else {
          axpy_scalar(w, r + i * row, acc.data() + i * hd, hd);
        }
      }
    }
    for (std::int64_t i = 0; i < n; ++i) {
      const float inv = 1.0f / sum[static_cast<std::size_t>(i)];
      for (std::int64_t d = 0; d < hd; ++d) {
        a.out[(begin + i) * hd + d] = float_to_half(acc[static_cast<std::size_t>(i * hd + d)] * inv);
      }
    }
  });
}

}  // namespace

void cpu_decode_attention_f16(const CpuAttentionBatch& a) {
  if (a.units == 0) return;
  for (std::int64_t i = 0; i < a.units; ++i) {
    append_row(a, a.keys, a.new_key + i * a.head_dim, i);
    append_row(a, a.values, a.new_value + i * a.head_dim, i);
  }
  if (a.compressed || a.kept > 0) {
    attend_generic(a);
  } else {
    attend_dense_f16(a);
  }
}

}  // namespace flexgen
