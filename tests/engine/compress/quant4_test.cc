#include "engine/compress/quant4.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/core/error.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;

// ---- an independent reference, in long double / float64 ----------------------------------------

// The geometry, worked out here from the definition in the header (not from quant_layout).
struct RefGeometry {
  std::int64_t outer = 1, length = 0, inner = 1, group = 0, groups_per_line = 0, padded = 0;
  std::int64_t num_groups = 0, num_codes = 0, param_bytes = 0;
  std::int64_t mins_offset = 0, scales_offset = 0, total = 0;
};

RefGeometry ref_geometry(const Shape& shape, const QuantSpec& spec) {
  RefGeometry g;
  const int rank = static_cast<int>(shape.size());
  const int axis = spec.axis < 0 ? spec.axis + rank : spec.axis;
  for (int d = 0; d < axis; ++d) g.outer *= shape[static_cast<std::size_t>(d)];
  for (int d = axis + 1; d < rank; ++d) g.inner *= shape[static_cast<std::size_t>(d)];
  g.length = shape[static_cast<std::size_t>(axis)];
  g.group = spec.group_size;
  g.groups_per_line = (g.length + g.group - 1) / g.group;
  g.padded = g.groups_per_line * g.group;
  g.num_groups = g.outer * g.groups_per_line * g.inner;
  g.num_codes = g.outer * g.padded * g.inner;
  g.param_bytes = spec.scale_type == ScaleType::kFloat32 ? 4 : 2;
  g.mins_offset = (g.num_codes + 1) / 2;
  g.scales_offset = g.mins_offset + g.num_groups * g.param_bytes;
  g.total = g.scales_offset + g.num_groups * g.param_bytes;
  return g;
}

// Spacing of the float16 / float32 grid around |v| (the subnormal spacing below the normal range).
long double grid_spacing(long double v, ScaleType type) {
  const int fraction_bits = type == ScaleType::kFloat32 ? 23 : 10;
  const int min_exponent = type == ScaleType::kFloat32 ? -126 : -14;
  const long double a = std::fabs(v);
  if (a < std::ldexp(1.0L, min_exponent)) return std::ldexp(1.0L, min_exponent - fraction_bits);
  int e = 0;
  std::frexp(a, &e);  // a = f * 2^e, f in [0.5, 1): a's binade is [2^(e-1), 2^e)
  return std::ldexp(1.0L, e - 1 - fraction_bits);
}

// The largest float16 value <= v, from the grid (not from float_to_half).
long double ref_floor_half(long double v) {
  const long double spacing = grid_spacing(v, ScaleType::kFloat16);
  return std::floor(v / spacing) * spacing;
}

long double cap_of(ScaleType type) {
  return type == ScaleType::kFloat32 ? static_cast<long double>(std::numeric_limits<float>::max())
                                     : 65504.0L;
}

// Round half to even, written out.
long double round_half_even(long double t) {
  const long double fl = std::floor(t);
  const long double frac = t - fl;
  if (frac > 0.5L) return fl + 1;
  if (frac < 0.5L) return fl;
  return std::fmod(fl, 2.0L) == 0 ? fl : fl + 1;
}

// Reads the test's view of the buffer.
int code_at(const std::vector<std::byte>& buf, std::int64_t k) {
  const auto byte = std::to_integer<unsigned>(buf[static_cast<std::size_t>(k / 2)]);
  return static_cast<int>((k % 2 == 0 ? byte : byte >> 4) & 0xfu);
}

float param_at(const std::vector<std::byte>& buf, std::int64_t offset, std::int64_t index,
               ScaleType type) {
  if (type == ScaleType::kFloat32) {
    float v = 0;
    std::memcpy(&v, buf.data() + offset + 4 * index, 4);
    return v;
  }
  std::uint16_t h = 0;
  std::memcpy(&h, buf.data() + offset + 2 * index, 2);
  return half_to_float(h);
}

std::vector<std::byte> to_bytes(const std::vector<unsigned>& values) {
  std::vector<std::byte> out;
  for (unsigned v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}

struct RoundTrip {
  std::vector<std::byte> buffer;
  std::vector<float> restored;
};

RoundTrip run(const std::vector<float>& x, const Shape& shape, const QuantSpec& spec) {
  RoundTrip r;
  r.buffer.assign(static_cast<std::size_t>(quantized_bytes(shape, spec)), std::byte{0xab});
  quantize(x, shape, spec, r.buffer);
  r.restored.assign(x.size(), std::numeric_limits<float>::quiet_NaN());
  dequantize(r.buffer, shape, spec, r.restored);
  return r;
}

// Checks everything the header promises, group by group, against the reference above: the byte
// count, the stored m and s, every code (ties within 1e-9 of .5 may go either way), the padding
// codes, the exact dequantization formula, and both error bounds.
void check_against_reference(const std::vector<float>& x, const Shape& shape,
                             const QuantSpec& spec) {
  const RefGeometry g = ref_geometry(shape, spec);
  ASSERT_EQ(quantized_bytes(shape, spec), g.total);
  const RoundTrip r = run(x, shape, spec);
  const ScaleType type = spec.scale_type;
  const long double cap = cap_of(type);
  const int p = type == ScaleType::kFloat32 ? 23 : 10;
  std::vector<bool> seen(static_cast<std::size_t>(g.num_codes), false);

  for (std::int64_t o = 0; o < g.outer; ++o) {
    for (std::int64_t gl = 0; gl < g.groups_per_line; ++gl) {
      for (std::int64_t i = 0; i < g.inner; ++i) {
        SCOPED_TRACE(::testing::Message()
                     << "group (o, g, i) = (" << o << ", " << gl << ", " << i << ") of "
                     << shape_to_string(shape) << " axis " << spec.axis << " G " << spec.group_size
                     << " " << scale_type_name(type));
        const std::int64_t gidx = (o * g.groups_per_line + gl) * g.inner + i;
        std::vector<std::int64_t> elements, codes;  // flat element index, code index
        for (std::int64_t t = 0; t < g.group; ++t) {
          const std::int64_t l = gl * g.group + t;
          const std::int64_t k = (o * g.padded + l) * g.inner + i;
          seen[static_cast<std::size_t>(k)] = true;
          if (l < g.length) {
            elements.push_back((o * g.length + l) * g.inner + i);
            codes.push_back(k);
          } else {
            ASSERT_EQ(code_at(r.buffer, k), 0) << "padding code " << k;
          }
        }
        long double mn = INFINITY, mx = -INFINITY;
        for (std::int64_t e : elements) {
          mn = std::min<long double>(mn, x[static_cast<std::size_t>(e)]);
          mx = std::max<long double>(mx, x[static_cast<std::size_t>(e)]);
        }
        const long double m = param_at(r.buffer, g.mins_offset, gidx, type);
        const long double s = param_at(r.buffer, g.scales_offset, gidx, type);
        // (d): m is min (f32) or the largest float16 value <= min (f16).
        if (type == ScaleType::kFloat32) {
          ASSERT_EQ(m, mn);
        } else {
          ASSERT_EQ(m, ref_floor_half(mn));
        }
        // s: a positive value of the type, <= cap, s * (max - m) <= 15, and the next value up is
        // either above the cap or breaks that.
        ASSERT_GT(s, 0.0L);
        ASSERT_LE(s, cap);
        ASSERT_EQ(std::fmod(s, grid_spacing(s, type)), 0.0L) << "s = " << static_cast<double>(s);
        ASSERT_LE(s * (mx - m), 15.0L);
        if (s < cap) {
          const long double next = s + grid_spacing(s, type);
          ASSERT_GT(next * (mx - m), 15.0L)
              << "s = " << static_cast<double>(s) << " is not the largest";
        }
        const long double bound_from_data =
            (0.5L + std::ldexp(1.0L, -19)) *
            std::max((mx - mn + (type == ScaleType::kFloat16 ? grid_spacing(mn, type) : 0.0L)) /
                         15.0L * (1.0L + std::ldexp(1.0L, 1 - p)),
                     1.0L / cap);
        for (std::size_t j = 0; j < elements.size(); ++j) {
          const float xv = x[static_cast<std::size_t>(elements[j])];
          const int q = code_at(r.buffer, codes[j]);
          const long double t = (static_cast<long double>(xv) - m) * s;
          ASSERT_GE(t, 0.0L);  // (a): never clamped
          ASSERT_LE(t, 15.0L);
          const long double q_ref = round_half_even(t);
          const long double frac = t - std::floor(t);
          if (std::fabs(frac - 0.5L) < 1e-9L) {
            ASSERT_TRUE(q == static_cast<int>(std::floor(t)) ||
                        q == static_cast<int>(std::floor(t)) + 1)
                << "near-tie t = " << static_cast<double>(t) << " gave code " << q;
          } else {
            ASSERT_EQ(q, static_cast<int>(q_ref))
                << "x = " << xv << " t = " << static_cast<double>(t);
          }
          // The dequantization formula, evaluated here in float32 with the stored values.
          const float quotient = static_cast<float>(q) / static_cast<float>(s);
          const float expected = quotient + static_cast<float>(m);
          const float got = r.restored[static_cast<std::size_t>(elements[j])];
          ASSERT_EQ(got, expected) << "element " << elements[j];
          const long double err = std::fabs(static_cast<long double>(xv) - got);
          const long double tail = std::ldexp(1.0L, -24) * std::fabs(static_cast<long double>(xv));
          ASSERT_LE(err, (0.5L + std::ldexp(1.0L, -19)) / s + tail) << "(b) x = " << xv;  // (b)
          ASSERT_LE(err, bound_from_data + tail)
              << "(c, d) x = " << xv << " range " << static_cast<double>(mx - mn);
        }
      }
    }
  }
  for (std::size_t k = 0; k < seen.size(); ++k)
    ASSERT_TRUE(seen[k]) << "code " << k << " unvisited";
  if (g.num_codes % 2 == 1) {
    ASSERT_EQ(std::to_integer<unsigned>(r.buffer[static_cast<std::size_t>(g.num_codes / 2)]) >> 4,
              0u)
        << "spare nibble";
  }
}

// ---- hand-worked examples
// ------------------------------------------------------------------------

TEST(Quant4Bytes, HandWorkedShapes) {
  const auto f16 = ScaleType::kFloat16;
  const auto f32 = ScaleType::kFloat32;
  // [128, 64] axis 1, G 64, f16: 128 groups; 128*64/2 = 4096 code bytes + 2*128*2 = 512.
  EXPECT_EQ(quantized_bytes({128, 64}, {64, 1, f16}), 4608);
  // [128, 64] axis 0: 2 groups per column * 64 columns = 128 groups; same 4096 + 512.
  EXPECT_EQ(quantized_bytes({128, 64}, {64, 0, f16}), 4608);
  // [100, 64] axis 0, f32: length 100 pads to 128; 128*64/2 = 4096 + 2*(2*64)*4 = 1024.
  EXPECT_EQ(quantized_bytes({100, 64}, {64, 0, f32}), 5120);
  // [3, 5] axis 1, G 4, f16: 5 pads to 8, 3*8 = 24 codes = 12 bytes; 6 groups: 2*6*2 = 24.
  EXPECT_EQ(quantized_bytes({3, 5}, {4, 1, f16}), 36);
  // [3] axis 0, G 3, f32: 3 codes = 2 bytes (spare nibble); 1 group: 2*1*4 = 8.
  EXPECT_EQ(quantized_bytes({3}, {3, 0, f32}), 10);
  // [2, 3, 5] axis 1, G 2, f16: 3 pads to 4; 2*4*5 = 40 codes = 20 bytes; 2*2*5 = 20 groups: 80.
  EXPECT_EQ(quantized_bytes({2, 3, 5}, {2, 1, f16}), 100);
  // Same with axis -2 (== 1).
  EXPECT_EQ(quantized_bytes({2, 3, 5}, {2, -2, f16}), 100);
  // [4096, 4096] weight, axis 0, f16: 2^24 codes = 2^23 bytes; 64*4096 = 2^18 groups: 2^20 bytes.
  EXPECT_EQ(quantized_bytes({4096, 4096}, weight_quant_spec(f16)), 8388608 + 1048576);
  // KV cache [512, 32, 128] (s, b*heads, head_dim), f16: 2^21 codes = 2^20 bytes; 2^15 groups.
  EXPECT_EQ(quantized_bytes({512, 32, 128}, cache_quant_spec(f16)), 1048576 + 2 * 32768 * 2);
  // Empty tensors.
  EXPECT_EQ(quantized_bytes({0, 64}, {64, 1, f16}), 0);
  EXPECT_EQ(quantized_bytes({5, 0}, {64, 1, f32}), 0);
}

TEST(Quant4Bytes, LayoutOffsets) {
  const QuantLayout q = quant_layout({3, 5}, {4, 1, ScaleType::kFloat16});
  EXPECT_EQ(q.outer, 3);
  EXPECT_EQ(q.length, 5);
  EXPECT_EQ(q.inner, 1);
  EXPECT_EQ(q.groups_per_line, 2);
  EXPECT_EQ(q.padded_length, 8);
  EXPECT_EQ(q.num_groups, 6);
  EXPECT_EQ(q.num_codes, 24);
  EXPECT_EQ(q.code_bytes, 12);
  EXPECT_EQ(q.mins_offset, 12);
  EXPECT_EQ(q.scales_offset, 24);
  EXPECT_EQ(q.total_bytes, 36);
}

// G = 4, [0, 1, 2, 3]: m = 0, s = 15 / 3 = 5, q = [0, 5, 10, 15], dequant exact.
// Codes: byte 0 = 0 | 5 << 4 = 0x50, byte 1 = 10 | 15 << 4 = 0xfa.
TEST(Quant4HandWorked, FourValuesFloat32) {
  const QuantSpec spec{4, 0, ScaleType::kFloat32};
  const RoundTrip r = run({0, 1, 2, 3}, {4}, spec);
  // m = 0.0f = 00 00 00 00; s = 5.0f = 0x40a00000 = 00 00 a0 40 (little-endian).
  EXPECT_EQ(r.buffer, to_bytes({0x50, 0xfa, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x40}));
  EXPECT_EQ(r.restored, (std::vector<float>{0, 1, 2, 3}));
}

TEST(Quant4HandWorked, FourValuesFloat16) {
  const QuantSpec spec{4, 0, ScaleType::kFloat16};
  const RoundTrip r = run({0, 1, 2, 3}, {4}, spec);
  // m = 0 = 0x0000; s = 5.0 = 1.25 * 2^2 = 0x4500.
  EXPECT_EQ(r.buffer, to_bytes({0x50, 0xfa, 0x00, 0x00, 0x00, 0x45}));
  EXPECT_EQ(r.restored, (std::vector<float>{0, 1, 2, 3}));
}

// [3, 3] grouped along axis 0 with G = 2, f16 parameters: length 3 pads to 4, inner 3 (odd, so
// the nibble pairs straddle rows). Groups (g, i):
//   (0,0) {1, 3}: m 1, s 15/2 = 7.5, codes 0, 15     (0,1) {10, 10}: constant, m 10, s 65504
//   (0,2) {-2, 2}: m -2, s 15/4 = 3.75, codes 0, 15  (1,0) {7}, (1,1) {40}, (1,2) {0.5}: constant
// Codes of the padded [4, 3] tensor: row 0 [0 0 0], row 1 [15 0 15], rows 2, 3 [0 0 0]
//   -> code pairs (0,0) (0,15) (0,15) (0,0) (0,0) (0,0) -> bytes 00 f0 f0 00 00 00.
// Float16: 1 = 3c00, 10 = 4900, -2 = c000, 7 = 4700, 40 = 5100, 0.5 = 3800, 7.5 = 4780,
// 3.75 = 4380, 65504 = 7bff.
TEST(Quant4HandWorked, AxisZeroPaddingOddInnerFloat16) {
  const std::vector<float> x = {1, 10, -2, 3, 10, 2, 7, 40, 0.5f};
  const RoundTrip r = run(x, {3, 3}, {2, 0, ScaleType::kFloat16});
  EXPECT_EQ(r.buffer, to_bytes({0x00, 0xf0, 0xf0, 0x00, 0x00, 0x00,                          //
                                0x00, 0x3c, 0x00, 0x49, 0x00, 0xc0, 0x00, 0x47, 0x00, 0x51,  //
                                0x00, 0x38,                                                  //
                                0x80, 0x47, 0xff, 0x7b, 0x80, 0x43, 0xff, 0x7b, 0xff, 0x7b,  //
                                0xff, 0x7b}));
  EXPECT_EQ(r.restored, x);  // 15/7.5 + 1 = 3, 15/3.75 - 2 = 2, 0/65504 + m = m
}

// m = 0, max = 15 gives s = 1: the values k + 0.5 sit exactly between two codes and round to the
// even one, as torch.round does.
TEST(Quant4HandWorked, TiesRoundToEven) {
  std::vector<float> x = {0, 15};
  for (int k = 0; k < 15; ++k) x.push_back(static_cast<float>(k) + 0.5f);
  for (int j = 0; x.size() < 64; ++j) x.push_back(static_cast<float>(j % 16));
  const std::vector<int> tie_codes = {0, 2, 2, 4, 4, 6, 6, 8, 8, 10, 10, 12, 12, 14, 14};
  for (ScaleType type : {ScaleType::kFloat32, ScaleType::kFloat16}) {
    const RoundTrip r = run(x, {64}, {64, 0, type});
    EXPECT_EQ(code_at(r.buffer, 0), 0);
    EXPECT_EQ(code_at(r.buffer, 1), 15);
    for (int k = 0; k < 15; ++k)
      EXPECT_EQ(code_at(r.buffer, 2 + k), tie_codes[static_cast<std::size_t>(k)]) << k;
    for (std::size_t j = 17; j < 64; ++j)
      EXPECT_EQ(code_at(r.buffer, static_cast<std::int64_t>(j)), static_cast<int>(x[j]));
  }
}

// An odd group size with a non-unit step: [-3, 27] gives s = 15/30 = 0.5, step 2; -2 + 2k lies
// at t = k + 0.5. 17 codes leave a spare (zero) high nibble in byte 8.
TEST(Quant4HandWorked, TiesWithStepTwoOddGroup) {
  std::vector<float> x = {-3, 27};
  for (int k = 0; k < 15; ++k) x.push_back(static_cast<float>(-2 + 2 * k));
  const std::vector<int> expected = {0, 15, 0, 2, 2, 4, 4, 6, 6, 8, 8, 10, 10, 12, 12, 14, 14};
  const RoundTrip r = run(x, {17}, {17, 0, ScaleType::kFloat32});
  ASSERT_EQ(r.buffer.size(), 9u + 8u);
  for (int k = 0; k < 17; ++k)
    EXPECT_EQ(code_at(r.buffer, k), expected[static_cast<std::size_t>(k)]) << k;
  EXPECT_EQ(std::to_integer<unsigned>(r.buffer[8]) >> 4, 0u);
  EXPECT_EQ(param_at(r.buffer, 9, 0, ScaleType::kFloat32), -3.0f);
  EXPECT_EQ(param_at(r.buffer, 13, 0, ScaleType::kFloat32), 0.5f);
  for (std::size_t k = 0; k < 17; ++k) {
    EXPECT_EQ(r.restored[k], static_cast<float>(expected[k]) * 2.0f - 3.0f) << k;
  }
}

TEST(Quant4HandWorked, ConstantGroupsAreExact) {
  for (ScaleType type : {ScaleType::kFloat32, ScaleType::kFloat16}) {
    for (float v : {0.0f, -0.0f, 1.0f, -2.5f, 0.0999755859375f, 65504.0f, -65504.0f}) {
      const std::vector<float> x(64 * 3, v);
      const RoundTrip r = run(x, {3, 64}, {64, 1, type});
      EXPECT_EQ(r.restored, x) << v;
      for (std::int64_t k = 0; k < 64 * 3; ++k) ASSERT_EQ(code_at(r.buffer, k), 0);
    }
  }
  // Float32 keeps any float32 constant.
  const std::vector<float> x(64, 0.1f);
  EXPECT_EQ(run(x, {64}, {64, 0, ScaleType::kFloat32}).restored, x);
}

// 0.1f is no float16 value: m = the float16 below it, 0x2e66 = 0.0999755859375; 15 / (0.1f - m)
// = 6.1e5 exceeds the cap, so s = 65504; t = (0.1f - m) * 65504 = 1.5993 -> q = 2;
// x' = 2/65504 + m = 0.1000061, within (0.5 + 2^-19) / 65504 = 7.6e-6 of 0.1.
TEST(Quant4HandWorked, ConstantNonHalfGroupWithHalfParameters) {
  const std::vector<float> x(64, 0.1f);
  const RoundTrip r = run(x, {64}, {64, 0, ScaleType::kFloat16});
  EXPECT_EQ(param_at(r.buffer, 32, 0, ScaleType::kFloat16), 0.0999755859375f);
  EXPECT_EQ(param_at(r.buffer, 34, 0, ScaleType::kFloat16), 65504.0f);
  for (std::int64_t k = 0; k < 64; ++k) ASSERT_EQ(code_at(r.buffer, k), 2);
  for (float y : r.restored) {
    EXPECT_NEAR(y, 0.1f, 7.7e-6);
    EXPECT_EQ(y, 2.0f / 65504.0f + 0.0999755859375f);
  }
}

// ---- random and adversarial groups against the reference ---------------------------------------

using Generator = std::function<float(std::mt19937_64&)>;

struct Distribution {
  const char* name;
  Generator draw;
  bool half_range;  // values fit float16 parameters
};

std::vector<Distribution> distributions() {
  return {
      {"uniform[-1,1]",
       [](std::mt19937_64& g) { return std::uniform_real_distribution<float>(-1, 1)(g); }, true},
      {"normal(0,0.02)",
       [](std::mt19937_64& g) { return std::normal_distribution<float>(0, 0.02f)(g); }, true},
      {"lognormal",
       [](std::mt19937_64& g) { return std::lognormal_distribution<float>(0, 1.5f)(g); }, true},
      {"negative[-5,-1]",
       [](std::mt19937_64& g) { return std::uniform_real_distribution<float>(-5, -1)(g); }, true},
      {"huge[-1e4,1e4]",
       [](std::mt19937_64& g) { return std::uniform_real_distribution<float>(-1e4f, 1e4f)(g); },
       true},
      {"tiny range 1e-8 near 0.3",
       [](std::mt19937_64& g) {
         return 0.3f + 1e-8f * std::uniform_real_distribution<float>(0, 1)(g);
       },
       true},
      {"tiny range 1e-8 near 0",
       [](std::mt19937_64& g) {
         return 1e-8f * std::uniform_real_distribution<float>(-0.5f, 0.5f)(g);
       },
       true},
      {"fp16 values",
       [](std::mt19937_64& g) {
         return half_to_float(float_to_half(std::normal_distribution<float>(0, 3)(g)));
       },
       true},
      {"outliers",
       [](std::mt19937_64& g) {
         const float v = std::normal_distribution<float>(0, 0.01f)(g);
         return std::uniform_int_distribution<int>(0, 63)(g) == 0 ? v + 100.0f : v;
       },
       true},
      {"few levels",  // many repeated values, exact steps
       [](std::mt19937_64& g) {
         return 0.25f * static_cast<float>(std::uniform_int_distribution<int>(-8, 8)(g));
       },
       true},
      {"wide f32 [-1e30,1e30]",
       [](std::mt19937_64& g) { return std::uniform_real_distribution<float>(-1e30f, 1e30f)(g); },
       false},
  };
}

struct ShapeCase {
  Shape shape;
  int axis;
  int group_size;
};

std::vector<ShapeCase> shape_cases() {
  return {
      {{200, 40}, 0, 64},   // weight-like, 200 = 3*64 + 8: padding along axis 0
      {{37, 130}, 1, 64},   // 130 = 2*64 + 2 along the last axis
      {{37, 130}, -1, 64},  // same via a negative axis
      {{128, 64}, 0, 64},   // exact multiples
      {{128, 64}, 1, 64},  {{5, 7, 70}, 2, 64},  // KV-cache-like, last axis
      {{5, 7, 70}, 1, 4},                        // middle axis, 7 pads to 8, even inner
      {{3, 9, 5}, 1, 4},                         // odd inner: code pairs straddle rows
      {{3, 9, 5}, 0, 2},                         // axis 0 of a 3-d tensor, odd inner 45
      {{129}, 0, 64},                            // 1-d with a one-element last group
      {{6, 11}, 1, 3},                           // odd group size, odd code count per line
      {{11, 6}, 0, 5},
  };
}

TEST(Quant4Reference, RandomDistributionsShapesAndSeeds) {
  for (const Distribution& dist : distributions()) {
    for (ScaleType type : {ScaleType::kFloat32, ScaleType::kFloat16}) {
      if (type == ScaleType::kFloat16 && !dist.half_range) continue;
      for (const ShapeCase& c : shape_cases()) {
        for (std::uint64_t seed : {1u, 2u, 3u}) {
          std::mt19937_64 gen(seed * 7919 + static_cast<std::uint64_t>(c.shape.size()));
          std::vector<float> x(static_cast<std::size_t>(shape_numel(c.shape)));
          for (float& v : x) v = dist.draw(gen);
          SCOPED_TRACE(::testing::Message() << dist.name << " seed " << seed);
          ASSERT_NO_FATAL_FAILURE(
              check_against_reference(x, c.shape, {c.group_size, c.axis, type}));
        }
      }
    }
  }
}

TEST(Quant4Reference, AdversarialGroups) {
  // Each row of [rows, 64] is one group (axis 1); the same data grouped along axis 0 mixes them.
  std::vector<std::vector<float>> rows;
  std::mt19937_64 gen(42);
  std::normal_distribution<float> normal(0, 1);
  auto row = [&](auto f) {
    std::vector<float> r(64);
    for (int t = 0; t < 64; ++t) r[static_cast<std::size_t>(t)] = f(t);
    rows.push_back(r);
  };
  row([](int) { return 3.25f; });                                        // constant
  row([&](int t) { return t == 17 ? 1000.0f : 0.01f * normal(gen); });   // one high outlier
  row([&](int t) { return t == 63 ? -1000.0f : 0.01f * normal(gen); });  // one low outlier
  row([](int t) {  // [-7, 8]: s = 1, every other value on a step boundary (a tie)
    return t == 0 ? -7.0f : t == 1 ? 8.0f : -7.0f + static_cast<float>(t % 15) + 0.5f;
  });
  row([](int t) { return static_cast<float>(t % 16); });            // every code exactly
  row([](int t) { return 1.0f + static_cast<float>(t) * 1e-9f; });  // below float32 spacing
  row([](int t) { return 1e-8f * static_cast<float>(t); });         // range 6.3e-7 near 0
  row([](int t) { return -1e4f + static_cast<float>(t) * (2e4f / 63.0f); });  // range 2e4
  row([&](int) { return -1.0f - std::fabs(normal(gen)); });                   // negative only
  row([](int t) { return t % 2 == 0 ? 65504.0f : -65504.0f; });  // the float16 extremes
  row([](int t) { return t == 0 ? 6e-8f : 0.0f; });              // float16 subnormal
  row([](int t) { return t < 32 ? -0.0f : 0.0f; });              // signed zeros
  std::vector<float> x;
  for (const auto& r : rows) x.insert(x.end(), r.begin(), r.end());
  const auto n = static_cast<std::int64_t>(rows.size());
  for (ScaleType type : {ScaleType::kFloat32, ScaleType::kFloat16}) {
    ASSERT_NO_FATAL_FAILURE(check_against_reference(x, {n, 64}, {64, 1, type}));
    ASSERT_NO_FATAL_FAILURE(check_against_reference(x, {n, 64}, {4, 0, type}));
    ASSERT_NO_FATAL_FAILURE(
        check_against_reference(x, {n, 64}, {64, 0, type}));  // one padded group
  }
}

// The f32 extremes allowed: |x| up to 2^125.
TEST(Quant4Reference, Float32RangeLimit) {
  std::vector<float> x(64);
  for (std::size_t t = 0; t < 64; ++t)
    x[t] = (t % 2 == 0 ? 1.0f : -1.0f) * std::ldexp(1.0f, 125 - static_cast<int>(t % 7));
  ASSERT_NO_FATAL_FAILURE(check_against_reference(x, {64}, {64, 0, ScaleType::kFloat32}));
}

TEST(Quant4Reference, FakeQuantizeIsTheRoundTrip) {
  std::mt19937_64 gen(7);
  std::normal_distribution<float> normal(0, 0.02f);
  Tensor w({100, 48});
  for (float& v : w.span()) v = normal(gen);
  const QuantSpec spec = weight_quant_spec(ScaleType::kFloat16);
  const Tensor y = fake_quantize(w, spec);
  ASSERT_EQ(y.shape(), w.shape());
  // The bound from the data alone, per group of 64 (then 36) rows of one column, written with
  // FlexGen's half step: codes, parameters and exact dequantized values of the same tensor are
  // checked by check_against_reference below.
  for (std::int64_t col = 0; col < 48; ++col) {
    for (std::int64_t g = 0; g < 2; ++g) {
      double mn = INFINITY, mx = -INFINITY;
      for (std::int64_t r = g * 64; r < std::min<std::int64_t>(100, g * 64 + 64); ++r) {
        mn = std::min<double>(mn, w[r * 48 + col]);
        mx = std::max<double>(mx, w[r * 48 + col]);
      }
      const double step = (mx - mn) / 15;
      for (std::int64_t r = g * 64; r < std::min<std::int64_t>(100, g * 64 + 64); ++r) {
        const double err = std::fabs(static_cast<double>(w[r * 48 + col]) - y[r * 48 + col]);
        // Half a step, plus float16 rounding of m (< 2^-10 |mn|, spread over 15 steps) and s.
        ASSERT_LE(
            err,
            0.5 * (step + std::ldexp(std::fabs(mn), -10) / 15) * (1 + std::ldexp(1.0, -8)) + 1e-9);
      }
    }
  }
  ASSERT_NO_FATAL_FAILURE(check_against_reference(
      std::vector<float>(w.span().begin(), w.span().end()), w.shape(), spec));
}

// ---- bad input
// -------------------------------------------------------------------------------------

std::string quantize_error(const std::vector<float>& x, const Shape& shape, const QuantSpec& spec) {
  std::vector<std::byte> out(static_cast<std::size_t>(quantized_bytes(shape, spec)),
                             std::byte{0x5a});
  const std::vector<std::byte> before = out;
  try {
    quantize(x, shape, spec, out);
  } catch (const Error& e) {
    EXPECT_EQ(out, before) << "quantize wrote to its output before failing";
    return e.what();
  }
  ADD_FAILURE() << "no flexgen::Error";
  return "";
}

TEST(Quant4Errors, NonFiniteInput) {
  std::vector<float> x(8, 1.0f);
  for (ScaleType type : {ScaleType::kFloat32, ScaleType::kFloat16}) {
    x[6] = std::numeric_limits<float>::quiet_NaN();
    std::string msg = quantize_error(x, {2, 4}, {4, 1, type});
    EXPECT_THAT(msg, HasSubstr("element [1, 2]"));
    EXPECT_THAT(msg, HasSubstr("nan"));
    EXPECT_THAT(msg, HasSubstr("finite"));
    x[6] = std::numeric_limits<float>::infinity();
    msg = quantize_error(x, {2, 4}, {4, 1, type});
    EXPECT_THAT(msg, HasSubstr("inf"));
    EXPECT_THAT(msg, HasSubstr("finite"));
    x[6] = 1.0f;
    x[0] = -std::numeric_limits<float>::infinity();
    msg = quantize_error(x, {2, 4}, {4, 0, type});
    EXPECT_THAT(msg, HasSubstr("element [0, 0]"));
    EXPECT_THAT(msg, HasSubstr("-inf"));
    x[0] = 1.0f;
  }
}

TEST(Quant4Errors, OutOfRangeInput) {
  std::vector<float> x(8, 1.0f);
  x[3] = 70000.0f;
  std::string msg = quantize_error(x, {8}, {4, 0, ScaleType::kFloat16});
  EXPECT_THAT(msg, HasSubstr("element [3]"));
  EXPECT_THAT(msg, HasSubstr("70000"));
  EXPECT_THAT(msg, HasSubstr("f16"));
  EXPECT_NO_THROW(run(x, {8}, {4, 0, ScaleType::kFloat32}));  // fine with float32 parameters
  x[3] = -1e38f;
  msg = quantize_error(x, {8}, {4, 0, ScaleType::kFloat32});
  EXPECT_THAT(msg, HasSubstr("outside the range"));
  EXPECT_THAT(msg, HasSubstr("f32"));
}

TEST(Quant4Errors, BadSpecOrShape) {
  auto message = [](auto f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const auto f32 = ScaleType::kFloat32;
  EXPECT_THAT(message([&] {
                quantized_bytes({4, 4}, {64, 2, f32});
              }),
              HasSubstr("axis 2 is out of range"));
  EXPECT_THAT(message([&] {
                quantized_bytes({4, 4}, {64, -3, f32});
              }),
              HasSubstr("axis -3 is out of range"));
  EXPECT_THAT(message([&] { quantized_bytes({4, 4}, {0, 0, f32}); }), HasSubstr("group_size 0"));
  EXPECT_THAT(message([&] { quantized_bytes({}, {64, 0, f32}); }), HasSubstr("no axis"));
  EXPECT_THAT(message([&] {
                quantized_bytes({3, -1}, {64, 0, f32});
              }),
              HasSubstr("negative dimension"));
  EXPECT_THAT(message([&] {
                quantized_bytes({1LL << 40, 1LL << 40}, {64, 0, f32});
              }),
              HasSubstr("too large"));

  const QuantSpec spec{4, 1, f32};
  const Shape shape{2, 4};  // 4 code bytes + 2 * 2 * 4 = 20 bytes
  std::vector<float> x(8, 0.5f), y(8);
  std::vector<std::byte> buf(20);
  EXPECT_THAT(message([&] { quantize(std::span<const float>(x).first(7), shape, spec, buf); }),
              HasSubstr("input holds 7 floats"));
  EXPECT_THAT(message([&] { quantize(x, shape, spec, std::span<std::byte>(buf).first(19)); }),
              HasSubstr("output buffer holds 19 bytes"));
  EXPECT_THAT(message([&] { quantize(x, shape, {4, 5, f32}, buf); }), HasSubstr("axis 5"));
  quantize(x, shape, spec, buf);
  EXPECT_THAT(
      message([&] { dequantize(std::span<const std::byte>(buf).first(19), shape, spec, y); }),
      HasSubstr("input buffer holds 19 bytes"));
  EXPECT_THAT(message([&] { dequantize(buf, shape, spec, std::span<float>(y).first(7)); }),
              HasSubstr("output holds 7 floats"));
  EXPECT_THAT(message([&] { dequantize(buf, shape, {0, 1, f32}, y); }), HasSubstr("group_size 0"));
}

}  // namespace
}  // namespace flexgen
