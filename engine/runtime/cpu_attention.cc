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
  quantize_cache_row_f16(row, a.head_dim, dst, a.row_bytes);
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
  const std::int64_t hd = a.head_dim, positions = a.past + 1, group = a.group;
  parallel_for(a.units, 1, [&](std::int64_t begin, std::int64_t end) {
    std::vector<float> keys(static_cast<std::size_t>(positions * hd)), values(keys.size()),
        q(static_cast<std::size_t>(group * hd)), out(static_cast<std::size_t>(hd)), summed(static_cast<std::size_t>(hd));
    for (std::int64_t i = begin; i < end; ++i) {
      const std::int64_t pad = a.pad_len[static_cast<std::size_t>((a.unit0 + i) / a.num_heads)];
      for (std::int64_t p = 0; p < positions; ++p) {
        decode_row(a, a.keys + (p * a.units + i) * a.row_bytes, keys.data() + p * hd);
        decode_row(a, a.values + (p * a.units + i) * a.row_bytes, values.data() + p * hd);
      }
      for (std::int64_t d = 0; d < group * hd; ++d) {
        q[static_cast<std::size_t>(d)] = half_to_float(a.query[i * group * hd + d]);
      }
      std::vector<std::int64_t> kept;
      if (a.kept > 0) {
        // One selection per unit, scored with the group's summed query (the query itself for 1).
        const float* selector = q.data();
        if (group > 1) {
          std::copy_n(q.data(), hd, summed.data());
          for (std::int64_t g = 1; g < group; ++g) {
            for (std::int64_t d = 0; d < hd; ++d) summed[static_cast<std::size_t>(d)] += q[static_cast<std::size_t>(g * hd + d)];
          }
          selector = summed.data();
        }
        kept = select_top_k(selector, keys.data(), hd, a.past, pad, a.kept);
      }
      for (std::int64_t g = 0; g < group; ++g) {
        const float* qg = q.data() + g * hd;
        if (a.kept > 0) {
          sparse_unit_attention(qg, keys.data(), values.data(), hd, a.past, pad, kept, out.data());
        } else {
          unit_attention(qg, hd, keys.data(), values.data(), hd, 1, a.past, pad, out.data(), hd);
        }
        for (std::int64_t d = 0; d < hd; ++d) {
          a.out[(i * group + g) * hd + d] = float_to_half(out[static_cast<std::size_t>(d)]);
        }
      }
    }
  });
}

// Dense fp16: threads take contiguous ranges of units and stream the positions in home order; a
// unit's `group` queries share each row read.
void attend_dense_f16(const CpuAttentionBatch& a) {
  const std::int64_t hd = a.head_dim, positions = a.past + 1, group = a.group;
  const bool fast = have_f16c() && hd % 8 == 0;
  const std::int64_t row = a.row_bytes / 2;  // fp16 elements per row
  const auto* keys = reinterpret_cast<const std::uint16_t*>(a.keys);
  const auto* values = reinterpret_cast<const std::uint16_t*>(a.values);
  const std::int64_t grain = std::max<std::int64_t>(1, a.units / (4 * static_cast<std::int64_t>(parallel_threads())));
  parallel_for(a.units, grain, [&](std::int64_t begin, std::int64_t end) {
    const std::int64_t n = end - begin, nq = n * group;  // units, queries (query j of unit j / group)
    std::vector<float> q(static_cast<std::size_t>(nq * hd)), acc(static_cast<std::size_t>(nq * hd), 0.0f),
        score(static_cast<std::size_t>(nq * positions)), mx(static_cast<std::size_t>(nq), -std::numeric_limits<float>::infinity()),
        sum(static_cast<std::size_t>(nq), 0.0f);
    std::vector<std::int64_t> pad(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
      pad[static_cast<std::size_t>(i)] = a.pad_len[static_cast<std::size_t>((a.unit0 + begin + i) / a.num_heads)];
    }
    for (std::int64_t d = 0; d < nq * hd; ++d) q[static_cast<std::size_t>(d)] = half_to_float(a.query[begin * group * hd + d]);
    for (std::int64_t p = 0; p < positions; ++p) {
      const std::uint16_t* r = keys + (p * a.units + begin) * row;
      for (std::int64_t j = 0; j < nq; ++j) {
        const std::int64_t i = j / group;
        if (p < pad[static_cast<std::size_t>(i)]) continue;
        const float s = fast ? dot_f16c(q.data() + j * hd, r + i * row, hd) : dot_scalar(q.data() + j * hd, r + i * row, hd);
        score[static_cast<std::size_t>(j * positions + p)] = s;
        mx[static_cast<std::size_t>(j)] = std::max(mx[static_cast<std::size_t>(j)], s);
      }
    }
    for (std::int64_t j = 0; j < nq; ++j) {
      for (std::int64_t p = pad[static_cast<std::size_t>(j / group)]; p < positions; ++p) {
        float& s = score[static_cast<std::size_t>(j * positions + p)];
        s = std::exp(s - mx[static_cast<std::size_t>(j)]);
        sum[static_cast<std::size_t>(j)] += s;
      }
    }
    for (std::int64_t p = 0; p < positions; ++p) {
      const std::uint16_t* r = values + (p * a.units + begin) * row;
      for (std::int64_t j = 0; j < nq; ++j) {
        const std::int64_t i = j / group;
        if (p < pad[static_cast<std::size_t>(i)]) continue;
        const float w = score[static_cast<std::size_t>(j * positions + p)];
        if (fast) {
          axpy_f16c(w, r + i * row, acc.data() + j * hd, hd);
        } else {
          axpy_scalar(w, r + i * row, acc.data() + j * hd, hd);
        }
      }
    }
    for (std::int64_t j = 0; j < nq; ++j) {
      const float inv = 1.0f / sum[static_cast<std::size_t>(j)];
      for (std::int64_t d = 0; d < hd; ++d) {
        a.out[begin * group * hd + j * hd + d] = float_to_half(acc[static_cast<std::size_t>(j * hd + d)] * inv);
      }
    }
  });
}

}  // namespace

void quantize_cache_row_f16(const std::uint16_t* row, std::int64_t head_dim, std::byte* dst, Bytes row_bytes) {
  std::vector<float> x(static_cast<std::size_t>(head_dim));
  for (std::int64_t d = 0; d < head_dim; ++d) x[static_cast<std::size_t>(d)] = half_to_float(row[d]);
  quantize(x, Shape{1, head_dim}, cache_quant_spec(ScaleType::kFloat16),
           std::span<std::byte>(dst, static_cast<std::size_t>(row_bytes)));
}

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
