#include "engine/runtime/cpu_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "engine/compress/quant4.h"
#include "engine/core/error.h"
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
void prefetch_row(const void* p, Bytes bytes) {
  const char* c = static_cast<const char*>(p);
  for (Bytes o = 0; o < bytes; o += 64) _mm_prefetch(c + o, _MM_HINT_T0);
}
bool have_f16c() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
  return has;
}
#else
float dot_f16c(const float* q, const std::uint16_t* k, std::int64_t n) { return dot_scalar(q, k, n); }
void axpy_f16c(float w, const std::uint16_t* v, float* acc, std::int64_t n) { axpy_scalar(w, v, acc, n); }
void prefetch_row(const void* p, Bytes bytes) {
  const char* c = static_cast<const char*>(p);
  for (Bytes o = 0; o < bytes; o += 64) __builtin_prefetch(c + o);
}
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

#if defined(__x86_64__)
// n % 8 == 0.
__attribute__((target("avx2,f16c"))) void widen_f16c(const std::uint16_t* h, float* out, std::int64_t n) {
  for (std::int64_t d = 0; d < n; d += 8) {
    _mm256_storeu_ps(out + d, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + d))));
  }
}
#else
void widen_f16c(const std::uint16_t* h, float* out, std::int64_t n) {
  for (std::int64_t d = 0; d < n; ++d) out[d] = half_to_float(h[d]);
}
#endif

// One home row to float32: fp16 widened, or a 4-bit row dequantized as dequantize() does it
// (cache_quant_spec with fp16 parameters: groups of 64 along the row, x = code / s + m in float32),
// without dequantize()'s per-call layout checks and buffers.
class RowDecoder {
 public:
  explicit RowDecoder(const CpuAttentionBatch& a)
      : hd_(a.head_dim), compressed_(a.compressed), fast_(have_f16c() && a.head_dim % 8 == 0) {
    if (compressed_) {
      layout_ = quant_layout(Shape{1, hd_}, cache_quant_spec(ScaleType::kFloat16));
      FLEXGEN_REQUIRE(layout_.total_bytes <= a.row_bytes, "cpu attention: a 4-bit row of head_dim ", hd_, " needs ",
                      layout_.total_bytes, " bytes, the cache holds ", a.row_bytes);
    }
  }
  void operator()(const std::byte* src, float* out) const {
    if (!compressed_) {
      const auto* h = reinterpret_cast<const std::uint16_t*>(src);
      if (fast_) {
        widen_f16c(h, out, hd_);
      } else {
        for (std::int64_t d = 0; d < hd_; ++d) out[d] = half_to_float(h[d]);
      }
      return;
    }
    const auto* codes = reinterpret_cast<const std::uint8_t*>(src);
    for (std::int64_t g = 0; g < layout_.groups_per_line; ++g) {
      std::uint16_t mb = 0, sb = 0;
      std::memcpy(&mb, src + layout_.mins_offset + g * 2, 2);
      std::memcpy(&sb, src + layout_.scales_offset + g * 2, 2);
      const float m = half_to_float(mb), s = half_to_float(sb);
      // The group's 16 possible values, each computed as dequantize() computes it.
      float value[16];
      for (unsigned c = 0; c < 16; ++c) value[c] = static_cast<float>(c) / s + m;
      const std::int64_t d1 = std::min(hd_, (g + 1) * layout_.group_size);
      for (std::int64_t d = g * layout_.group_size; d < d1; ++d) {
        out[d] = value[(codes[d / 2] >> (4 * (d & 1))) & 15u];
      }
    }
  }

 private:
  std::int64_t hd_;
  bool compressed_, fast_;
  QuantLayout layout_{};
};

// One thread's range [begin, end) of units: each unit's pad length, its queries widened to
// float32 ([units, group * head_dim]) and, for top-k with grouped queries, each unit's summed
// query, which selects for the whole group (empty otherwise: the query itself selects).
struct UnitRange {
  std::vector<std::int64_t> pad;
  std::vector<float> q, selector;
  UnitRange(const CpuAttentionBatch& a, std::int64_t begin, std::int64_t end) {
    const std::int64_t n = end - begin, hd = a.head_dim, group = a.group;
    pad.resize(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
      pad[static_cast<std::size_t>(i)] = a.pad_len[static_cast<std::size_t>((a.unit0 + begin + i) / a.num_heads)];
    }
    q.resize(static_cast<std::size_t>(n * group * hd));
    for (std::int64_t d = 0; d < n * group * hd; ++d) q[static_cast<std::size_t>(d)] = half_to_float(a.query[begin * group * hd + d]);
    if (a.kept > 0 && group > 1) {
      selector.resize(static_cast<std::size_t>(n * hd));
      for (std::int64_t i = 0; i < n; ++i) {
        float* sel = selector.data() + i * hd;
        std::copy_n(q.data() + i * group * hd, hd, sel);
        for (std::int64_t g = 1; g < group; ++g) {
          for (std::int64_t d = 0; d < hd; ++d) sel[d] += q[static_cast<std::size_t>((i * group + g) * hd + d)];
        }
      }
    }
  }
};

// The positions a unit attends to under top-k: the k best of [0, past) by `selection` (a score
// per position; padding ones are not read), less the padding ones, then its own position `past`.
// `scratch` holds past floats.
std::vector<std::int64_t> sparse_positions(const float* selection, std::int64_t past, std::int64_t pad, std::int64_t k,
                                           std::vector<float>& scratch) {
  for (std::int64_t s = 0; s < past; ++s) {
    scratch[static_cast<std::size_t>(s)] = s < pad ? -std::numeric_limits<float>::infinity() : selection[s];
  }
  std::vector<std::int64_t> kept = top_k_of_scores(scratch, k);
  kept.erase(std::remove_if(kept.begin(), kept.end(), [&](std::int64_t s) { return s < pad; }), kept.end());
  kept.push_back(past);
  return kept;
}

// 4-bit rows or sparse attention. Like the dense fp16 path, threads take contiguous ranges of units
// and stream the keys in home order, each row decoded once to float32 and scored against its
// unit's queries with attention_dot, so every score, selection and output is the one that
// unit_attention / select_top_k + sparse_unit_attention compute on the decoded rows.
// Dense: the values stream in home order too, accumulated in double per query as softmax_combine
// does. Sparse: the top k positions of each unit (scored with the group's summed query) and its
// own; only those value rows are read.
void attend_streamed(const CpuAttentionBatch& a) {
  const std::int64_t hd = a.head_dim, past = a.past, positions = past + 1, group = a.group;
  const bool sparse = a.kept > 0;
  const RowDecoder decode(a);
  const std::int64_t grain = std::max<std::int64_t>(1, a.units / (4 * static_cast<std::int64_t>(parallel_threads())));
  parallel_for(a.units, grain, [&](std::int64_t begin, std::int64_t end) {
    const std::int64_t n = end - begin, nq = n * group;
    const auto at = [](std::int64_t i) { return static_cast<std::size_t>(i); };
    const UnitRange range(a, begin, end);
    const std::vector<std::int64_t>& pad = range.pad;
    const std::vector<float>& q = range.q;
    const std::vector<float>& selector = range.selector;
    std::vector<float> row(at(hd)), score(at(nq * positions), 0.0f), select_score(selector.empty() ? 0 : at(n * past));
    const std::byte* keys = a.keys + begin * a.row_bytes;
    for (std::int64_t p = 0; p < positions; ++p) {
      for (std::int64_t i = 0; i < n; ++i) {
        const bool padded = p < pad[at(i)];
        if (padded && !(p == past)) continue;
        decode(keys + (p * a.units + i) * a.row_bytes, row.data());
        for (std::int64_t g = 0; g < group; ++g) {
          const std::int64_t j = i * group + g;
          // A padding query attends to its own key only, with score 0 (unit_attention).
          score[at(j * positions + p)] =
              padded && !sparse ? 0.0f : attention_dot(q.data() + j * hd, row.data(), hd);
        }
        if (!selector.empty() && p < past) {
          select_score[at(i * past + p)] = attention_dot(selector.data() + i * hd, row.data(), hd);
        }
      }
    }
    std::vector<float> out(at(hd));
    if (sparse) {
      std::vector<float> scores, values, scratch(at(past));
      std::vector<std::int64_t> local;
      for (std::int64_t i = 0; i < n; ++i) {
        const std::int64_t unit = begin + i;
        const float* selection = selector.empty() ? score.data() + i * group * positions : select_score.data() + i * past;
        const std::vector<std::int64_t> kept = sparse_positions(selection, past, pad[at(i)], a.kept, scratch);
        values.resize(at(static_cast<std::int64_t>(kept.size()) * hd));
        local.resize(kept.size());
        for (std::size_t r = 0; r < kept.size(); ++r) {
          decode(a.values + (kept[r] * a.units + unit) * a.row_bytes, values.data() + static_cast<std::int64_t>(r) * hd);
          local[r] = static_cast<std::int64_t>(r);
        }
        for (std::int64_t g = 0; g < group; ++g) {
          const std::int64_t j = i * group + g;
          scores.clear();
          for (std::int64_t s : kept) scores.push_back(score[at(j * positions + s)]);
          softmax_combine(scores, local, values.data(), hd, out.data());
          for (std::int64_t d = 0; d < hd; ++d) a.out[(unit * group + g) * hd + d] = float_to_half(out[at(d)]);
        }
      }
      return;
    }
    // Dense: softmax_combine's arithmetic, with the values streamed in home order.
    std::vector<double> weight(at(nq * positions), 0.0), sum(at(nq), 0.0), acc(at(nq * hd), 0.0);
    const auto first = [&](std::int64_t i) { return std::min(pad[at(i)], past); };
    for (std::int64_t j = 0; j < nq; ++j) {
      const std::int64_t p0 = first(j / group);
      const float* sj = score.data() + j * positions;
      const float top = *std::max_element(sj + p0, sj + positions);
      for (std::int64_t p = p0; p < positions; ++p) {
        weight[at(j * positions + p)] = std::exp(static_cast<double>(sj[p] - top));
        sum[at(j)] += weight[at(j * positions + p)];
      }
    }
    const std::byte* values = a.values + begin * a.row_bytes;
    for (std::int64_t p = 0; p < positions; ++p) {
      for (std::int64_t i = 0; i < n; ++i) {
        if (p < first(i)) continue;
        decode(values + (p * a.units + i) * a.row_bytes, row.data());
        for (std::int64_t g = 0; g < group; ++g) {
          const std::int64_t j = i * group + g;
          const double w = weight[at(j * positions + p)];
          double* accj = acc.data() + j * hd;
          for (std::int64_t d = 0; d < hd; ++d) accj[d] += w * row[at(d)];
        }
      }
    }
    for (std::int64_t j = 0; j < nq; ++j) {
      for (std::int64_t d = 0; d < hd; ++d) {
        a.out[begin * group * hd + j * hd + d] = float_to_half(static_cast<float>(acc[at(j * hd + d)] / sum[at(j)]));
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

// Sparse over fp16 rows with F16C: as the dense fp16 path, each key row scored straight from fp16
// (every position, in home order), then per unit the top k, the softmax over them and the new
// token's own position in float32, and only the kept value rows read.
void attend_sparse_f16(const CpuAttentionBatch& a) {
  const std::int64_t hd = a.head_dim, past = a.past, positions = past + 1, group = a.group;
  const std::int64_t row = a.row_bytes / 2;
  const auto* keys = reinterpret_cast<const std::uint16_t*>(a.keys);
  const auto* values = reinterpret_cast<const std::uint16_t*>(a.values);
  const std::int64_t grain = std::max<std::int64_t>(1, a.units / (4 * static_cast<std::int64_t>(parallel_threads())));
  parallel_for(a.units, grain, [&](std::int64_t begin, std::int64_t end) {
    const auto at = [](std::int64_t i) { return static_cast<std::size_t>(i); };
    const std::int64_t n = end - begin, nq = n * group;
    const UnitRange range(a, begin, end);
    const std::vector<std::int64_t>& pad = range.pad;
    const std::vector<float>& q = range.q;
    const std::vector<float>& selector = range.selector;  // one selection per unit, by the group's summed query
    std::vector<float> score(at(nq * positions), 0.0f), select_score(group > 1 ? at(n * past) : 0);
    for (std::int64_t p = 0; p < positions; ++p) {
      const std::uint16_t* r = keys + (p * a.units + begin) * row;
      for (std::int64_t i = 0; i < n; ++i) {
        if (p < pad[at(i)] && p < past) continue;
        for (std::int64_t g = 0; g < group; ++g) {
          const std::int64_t j = i * group + g;
          score[at(j * positions + p)] = dot_f16c(q.data() + j * hd, r + i * row, hd);
        }
        if (group > 1 && p < past) select_score[at(i * past + p)] = dot_f16c(selector.data() + i * hd, r + i * row, hd);
      }
    }
    std::vector<float> scratch(at(past)), acc(at(hd)), w;
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t unit = begin + i;
      const float* selection = group > 1 ? select_score.data() + i * past : score.data() + i * positions;
      const std::vector<std::int64_t> kept = sparse_positions(selection, past, pad[at(i)], a.kept, scratch);
      w.resize(kept.size());
      for (std::int64_t g = 0; g < group; ++g) {
        const std::int64_t j = i * group + g;
        float top = -std::numeric_limits<float>::infinity(), sum = 0.0f;
        for (std::int64_t s : kept) top = std::max(top, score[at(j * positions + s)]);
        for (std::size_t r = 0; r < kept.size(); ++r) {
          w[r] = std::exp(score[at(j * positions + kept[r])] - top);
          sum += w[r];
        }
        std::fill(acc.begin(), acc.end(), 0.0f);
        if (g == 0) {  // the kept rows are scattered over the home buffer: ask for them all first
          for (std::int64_t s : kept) prefetch_row(values + (s * a.units + unit) * row, a.row_bytes);
        }
        for (std::size_t r = 0; r < kept.size(); ++r) axpy_f16c(w[r], values + (kept[r] * a.units + unit) * row, acc.data(), hd);
        for (std::int64_t d = 0; d < hd; ++d) a.out[(unit * group + g) * hd + d] = float_to_half(acc[at(d)] / sum);
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
  if (!a.compressed && a.kept > 0 && have_f16c() && a.head_dim % 8 == 0) {
    attend_sparse_f16(a);
  } else if (a.compressed || a.kept > 0) {
    attend_streamed(a);
  } else {
    attend_dense_f16(a);
  }
}

}  // namespace flexgen
