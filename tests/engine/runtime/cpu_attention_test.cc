// Delegated CPU attention over fp16 rows (cpu_attention.h) against a float64 reference written
// here: dense (F16C and scalar paths), with padding, 4-bit rows, and top-k sparsity; the new rows
// must land at position `past` of the home buffers.
#include "engine/runtime/cpu_attention.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "engine/compress/quant4.h"
#include "engine/tensor/tensor.h"

namespace flexgen {
namespace {

struct Case {
  std::int64_t units, unit0, heads, head_dim, past;
  std::vector<std::int64_t> pads;  // per sequence of the batch
  bool compressed = false;
  std::int64_t kept = 0;
  std::int64_t group = 1;  // query heads per unit (grouped-query attention)
};

float to_half(float v) { return half_to_float(float_to_half(v)); }

// The float64 reference for one unit: rows [positions, hd] as doubles.
std::vector<double> reference(const std::vector<double>& q, const std::vector<std::vector<double>>& keys,
                              const std::vector<std::vector<double>>& values, std::int64_t past, std::int64_t pad,
                              std::int64_t kept, const std::vector<double>& selector) {
  const std::size_t hd = q.size();
  auto dot = [&](const std::vector<double>& x, std::int64_t p) {
    double s = 0;
    for (std::size_t d = 0; d < hd; ++d) s += x[d] * keys[static_cast<std::size_t>(p)][d];
    return s;
  };
  auto score = [&](std::int64_t p) { return dot(q, p); };
  std::vector<std::int64_t> use;
  if (kept == 0) {
    for (std::int64_t p = pad; p <= past; ++p) use.push_back(p);
  } else {
    std::vector<std::int64_t> order(static_cast<std::size_t>(past));
    std::iota(order.begin(), order.end(), 0);
    // The unit's selection: scored with the selector (the group's summed query).
    auto sc = [&](std::int64_t p) { return p < pad ? -INFINITY : dot(selector, p); };
    std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) { return sc(a) > sc(b); });
    for (std::int64_t i = 0; i < kept; ++i) {
      if (order[static_cast<std::size_t>(i)] >= pad) use.push_back(order[static_cast<std::size_t>(i)]);
    }
    use.push_back(past);
  }
  double mx = -INFINITY;
  for (std::int64_t p : use) mx = std::max(mx, score(p));
  double sum = 0;
  std::vector<double> out(hd, 0.0);
  for (std::int64_t p : use) {
    const double w = std::exp(score(p) - mx);
    sum += w;
    for (std::size_t d = 0; d < hd; ++d) out[d] += w * values[static_cast<std::size_t>(p)][d];
  }
  for (double& v : out) v /= sum;
  return out;
}

void check(const Case& c, std::uint32_t seed) {
  SCOPED_TRACE(::testing::Message() << "units " << c.units << " head_dim " << c.head_dim << " past " << c.past
                                    << (c.compressed ? " 4-bit" : " fp16") << " kept " << c.kept);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const std::int64_t hd = c.head_dim, cap = c.past + 2;
  const QuantSpec qs = cache_quant_spec(ScaleType::kFloat16);
  const Bytes row = c.compressed ? quantized_bytes(Shape{1, hd}, qs) : hd * 2;
  std::vector<std::byte> keys(static_cast<std::size_t>(cap * c.units * row)), values(keys.size());
  // Reference rows per unit, as the stored format gives them back.
  std::vector<std::vector<std::vector<double>>> rk(static_cast<std::size_t>(c.units)), rv(rk.size());
  auto store = [&](std::vector<std::byte>& buf, std::int64_t p, std::int64_t i, const std::vector<float>& x,
                   std::vector<double>& as_read) {
    std::byte* dst = buf.data() + (p * c.units + i) * row;
    as_read.assign(static_cast<std::size_t>(hd), 0.0);
    if (c.compressed) {
      quantize(x, Shape{1, hd}, qs, std::span<std::byte>(dst, static_cast<std::size_t>(row)));
      std::vector<float> back(static_cast<std::size_t>(hd));
      dequantize(std::span<const std::byte>(dst, static_cast<std::size_t>(row)), Shape{1, hd}, qs, back);
      for (std::int64_t d = 0; d < hd; ++d) as_read[static_cast<std::size_t>(d)] = back[static_cast<std::size_t>(d)];
    } else {
      auto* h = reinterpret_cast<std::uint16_t*>(dst);
      for (std::int64_t d = 0; d < hd; ++d) {
        h[d] = float_to_half(x[static_cast<std::size_t>(d)]);
        as_read[static_cast<std::size_t>(d)] = half_to_float(h[d]);
      }
    }
  };
  auto random_row = [&] {
    std::vector<float> x(static_cast<std::size_t>(hd));
    for (float& v : x) v = to_half(nd(rng));
    return x;
  };
  for (std::int64_t i = 0; i < c.units; ++i) {
    rk[static_cast<std::size_t>(i)].resize(static_cast<std::size_t>(c.past + 1));
    rv[static_cast<std::size_t>(i)].resize(static_cast<std::size_t>(c.past + 1));
    for (std::int64_t p = 0; p < c.past; ++p) {
      store(keys, p, i, random_row(), rk[static_cast<std::size_t>(i)][static_cast<std::size_t>(p)]);
      store(values, p, i, random_row(), rv[static_cast<std::size_t>(i)][static_cast<std::size_t>(p)]);
    }
  }
  const std::int64_t G = c.group;
  std::vector<std::uint16_t> q(static_cast<std::size_t>(c.units * G * hd)), nk(static_cast<std::size_t>(c.units * hd)),
      nv(nk.size()), out(q.size(), 0xffff);
  std::vector<std::vector<double>> rq(static_cast<std::size_t>(c.units * G));
  for (std::int64_t i = 0; i < c.units; ++i) {
    const auto b = random_row(), e = random_row();
    for (std::int64_t g = 0; g < G; ++g) {
      const auto a = random_row();
      for (std::int64_t d = 0; d < hd; ++d) {
        const auto k = static_cast<std::size_t>((i * G + g) * hd + d);
        q[k] = float_to_half(a[static_cast<std::size_t>(d)] * 0.3f);
        rq[static_cast<std::size_t>(i * G + g)].push_back(half_to_float(q[k]));
      }
    }
    for (std::int64_t d = 0; d < hd; ++d) {
      const auto k = static_cast<std::size_t>(i * hd + d);
      nk[k] = float_to_half(b[static_cast<std::size_t>(d)]);
      nv[k] = float_to_half(e[static_cast<std::size_t>(d)]);
    }
    std::vector<std::byte> scratch_k(keys.size()), scratch_v(keys.size());
    // What the new rows read back as once stored.
    std::vector<float> fk(b), fv(e);
    store(scratch_k, c.past, i, fk, rk[static_cast<std::size_t>(i)][static_cast<std::size_t>(c.past)]);
    store(scratch_v, c.past, i, fv, rv[static_cast<std::size_t>(i)][static_cast<std::size_t>(c.past)]);
  }
  CpuAttentionBatch a;
  a.units = c.units;
  a.unit0 = c.unit0;
  a.num_heads = c.heads;
  a.group = G;
  a.head_dim = hd;
  a.past = c.past;
  a.pad_len = c.pads;
  a.query = q.data();
  a.new_key = nk.data();
  a.new_value = nv.data();
  a.keys = keys.data();
  a.values = values.data();
  a.row_bytes = row;
  a.compressed = c.compressed;
  a.kept = c.kept;
  a.out = out.data();
  cpu_decode_attention_f16(a);
  double worst = 0;
  for (std::int64_t i = 0; i < c.units; ++i) {
    const std::int64_t pad = c.pads[static_cast<std::size_t>((c.unit0 + i) / c.heads)];
    std::vector<double> summed(static_cast<std::size_t>(hd), 0.0);
    for (std::int64_t g = 0; g < G; ++g) {
      for (std::int64_t d = 0; d < hd; ++d) {
        summed[static_cast<std::size_t>(d)] += rq[static_cast<std::size_t>(i * G + g)][static_cast<std::size_t>(d)];
      }
    }
    for (std::int64_t g = 0; g < G; ++g) {
      const auto ref = reference(rq[static_cast<std::size_t>(i * G + g)], rk[static_cast<std::size_t>(i)],
                                 rv[static_cast<std::size_t>(i)], c.past, pad, c.kept, summed);
      for (std::int64_t d = 0; d < hd; ++d) {
        const float got = half_to_float(out[static_cast<std::size_t>((i * G + g) * hd + d)]);
        ASSERT_FALSE(std::isnan(got));
        worst = std::max(worst, std::abs(got - ref[static_cast<std::size_t>(d)]));
      }
    }
    if (!c.compressed) {  // the new rows are at position past, bit for bit
      const auto* hk = reinterpret_cast<const std::uint16_t*>(keys.data() + (c.past * c.units + i) * row);
      const auto* hv = reinterpret_cast<const std::uint16_t*>(values.data() + (c.past * c.units + i) * row);
      for (std::int64_t d = 0; d < hd; ++d) {
        ASSERT_EQ(hk[d], nk[static_cast<std::size_t>(i * hd + d)]);
        ASSERT_EQ(hv[d], nv[static_cast<std::size_t>(i * hd + d)]);
      }
    }
  }
  EXPECT_LE(worst, 2e-3) << "largest absolute error against the float64 reference (values ~ N(0, 1))";
}

TEST(CpuAttentionF16, DenseMatchesTheFloat64Reference) {
  check({6, 2, 4, 64, 37, {0, 5, 11}}, 1);        // F16C path, padding, units offset into the batch
  check({3, 0, 3, 12, 20, {2}}, 2);               // head_dim not a multiple of 8: scalar path
  check({40, 8, 8, 128, 300, {0, 7, 0, 150, 3, 0}}, 3);
  check({2, 0, 2, 64, 0, {0}}, 4);                // first decode step after a 1-token prompt
}

TEST(CpuAttentionF16, FourBitRowsMatchTheReferenceOnDequantizedRows) {
  Case c{5, 1, 3, 64, 29, {0, 4}};
  c.compressed = true;
  check(c, 5);
  Case many{40, 8, 8, 128, 300, {0, 7, 0, 150, 3, 0}};  // many units: several threads' ranges
  many.compressed = true;
  check(many, 12);
  Case narrow{3, 0, 3, 12, 20, {2}};  // one short group per row, the scalar widening path
  narrow.compressed = true;
  check(narrow, 13);
}

TEST(CpuAttentionF16, TopKMatchesTheReferenceSelection) {
  Case c{4, 0, 2, 64, 40, {0, 9}};
  c.kept = 10;
  check(c, 6);
  c.compressed = true;
  check(c, 7);
  Case many{40, 8, 8, 128, 300, {0, 7, 0, 150, 3, 0}};  // padding beyond k for some sequences
  many.kept = 75;
  check(many, 14);
  many.compressed = true;
  check(many, 15);
}

// Grouped-query attention (LLaMA): each unit (a key/value head) serves `group` query heads.
TEST(CpuAttentionF16, GroupedQueriesMatchTheReference) {
  Case c{8, 4, 4, 64, 33, {0, 6, 2}};  // units 4..11 of a batch with 4 key/value heads per sequence
  c.group = 4;
  check(c, 8);                          // F16C path
  c.head_dim = 12;
  check(c, 9);                          // scalar path
  c.head_dim = 64;
  c.kept = 8;                           // one top-k selection per unit, by the summed query
  check(c, 10);
  c.compressed = true;
  check(c, 11);
}

}  // namespace
}  // namespace flexgen
