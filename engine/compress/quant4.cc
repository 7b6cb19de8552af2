#include "engine/compress/quant4.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "engine/core/error.h"

namespace flexgen {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the quantized buffer layout is defined as little-endian");

// ---- the two parameter representations -------------------------------------------------------
// Each gives the stored bits of a value, the value of stored bits, and the neighbours of a value.

struct F32Params {
  using Bits = float;
  static constexpr float kCap = std::numeric_limits<float>::max();
  static constexpr float kMaxAbsInput = 0x1p125f;
  static float value(float bits) { return bits; }
  static float nearest(float v) { return v; }
  static float floor(float v) { return v; }  // every float32 is a float32 value
  static float down(float v) { return std::nextafter(v, -std::numeric_limits<float>::infinity()); }
  static float up(float v) { return std::nextafter(v, std::numeric_limits<float>::infinity()); }
};

struct F16Params {
  using Bits = std::uint16_t;
  static constexpr std::uint16_t kCap = 0x7bff;  // 65504
  static constexpr float kMaxAbsInput = 65504.0f;
  static float value(std::uint16_t bits) { return half_to_float(bits); }
  static std::uint16_t nearest(float v) { return float_to_half(v); }
  // The next float16 value below a finite one (the bit pattern of a negative value grows).
  static std::uint16_t down(std::uint16_t h) {
    if ((h & 0x7fffu) == 0) return 0x8001;  // +-0 -> the negative subnormal closest to zero
    return static_cast<std::uint16_t>((h & 0x8000u) ? h + 1 : h - 1);
  }
  // The next float16 value above a positive finite one below the cap.
  static std::uint16_t up(std::uint16_t h) {
    assert((h & 0x8000u) == 0 && h < kCap);
    return static_cast<std::uint16_t>(h + 1);
  }
  // The largest float16 value <= v, for |v| <= 65504: round to nearest, then step down if above.
  static std::uint16_t floor(float v) {
    std::uint16_t h = float_to_half(v);
    if (half_to_float(h) > v) h = down(h);
    return h;
  }
};

// Exactly whether s * (mx - m) <= 15. The two products are exact in float64 (at most 24-bit by
// 24-bit significands, far from float64's range limits); their difference is computed with
// Knuth's TwoSum, so d + e == s*mx - s*m exactly, and e decides the comparison when d == 15.
bool scale_covers(float s, float mx, float m) {
  const double a = static_cast<double>(s) * static_cast<double>(mx);
  const double b = -(static_cast<double>(s) * static_cast<double>(m));
  const double d = a + b;
  const double b_virtual = d - a;
  const double a_virtual = d - b_virtual;
  const double e = (a - a_virtual) + (b - b_virtual);
  return d < 15.0 || (d == 15.0 && e <= 0.0);
}

// The largest representable s <= cap with s * (mx - m) <= 15, found from the float64 estimate
// 15 / (mx - m) by stepping (at most a step or two) until the exact test says it is the largest.
template <class P>
typename P::Bits largest_scale(float mx, float m) {
  const double range = static_cast<double>(mx) - static_cast<double>(m);
  typename P::Bits s = P::kCap;
  if (range > 0.0) {
    const double estimate = 15.0 / range;
    if (estimate < static_cast<double>(P::value(P::kCap)))
      s = P::nearest(static_cast<float>(estimate));
  }
  while (!scale_covers(P::value(s), mx, m)) s = P::down(s);
  while (s != P::kCap && scale_covers(P::value(P::up(s)), mx, m)) s = P::up(s);
  assert(P::value(s) > 0.0f);
  return s;
}

// ---- codes
// ---------------------------------------------------------------------------------------

// q = round_half_to_even(clamp((x - m) * s, 0, 15)) in float64. Adding and subtracting 2^52 rounds
// a value in [0, 2^52) to an integer in the current rounding mode (nearest-even by default); the
// build does not allow the compiler to fold it away (no -ffast-math).
inline std::uint8_t code_of(float x, double m, double s) {
  double t = (static_cast<double>(x) - m) * s;
  t = std::min(std::max(t, 0.0), 15.0);
  t = (t + 0x1p52) - 0x1p52;
  return static_cast<std::uint8_t>(t);
}

// ORs n codes into the nibble stream at code index k0 (the stream starts zeroed; bytes wholly
// covered by this call are simply stored).
void put_codes(const std::uint8_t* codes, std::int64_t n, std::int64_t k0, std::uint8_t* stream) {
  std::int64_t i = 0;
  if ((k0 & 1) != 0 && n > 0) {
    stream[k0 >> 1] = static_cast<std::uint8_t>(stream[k0 >> 1] | (codes[0] << 4));
    i = 1;
  }
  std::uint8_t* dst = stream + ((k0 + i) >> 1);
  for (; i + 1 < n; i += 2) *dst++ = static_cast<std::uint8_t>(codes[i] | (codes[i + 1] << 4));
  if (i < n) *dst = static_cast<std::uint8_t>(*dst | codes[i]);
}

// Reads n codes from the nibble stream starting at code index k0.
void get_codes(const std::uint8_t* stream, std::int64_t n, std::int64_t k0, std::uint8_t* codes) {
  std::int64_t i = 0;
  if ((k0 & 1) != 0 && n > 0) {
    codes[0] = static_cast<std::uint8_t>(stream[k0 >> 1] >> 4);
    i = 1;
  }
  const std::uint8_t* src = stream + ((k0 + i) >> 1);
  for (; i + 1 < n; i += 2, ++src) {
    codes[i] = static_cast<std::uint8_t>(*src & 0x0fu);
    codes[i + 1] = static_cast<std::uint8_t>(*src >> 4);
  }
  if (i < n) codes[i] = static_cast<std::uint8_t>(*src & 0x0fu);
}

template <class Bits>
void store_param(std::uint8_t* buffer, Bytes offset, std::int64_t index, Bits value) {
  std::memcpy(buffer + offset + index * static_cast<Bytes>(sizeof(Bits)), &value, sizeof(Bits));
}

template <class P>
float load_param(const std::uint8_t* buffer, Bytes offset, std::int64_t index) {
  typename P::Bits bits;
  std::memcpy(&bits, buffer + offset + index * static_cast<Bytes>(sizeof(bits)), sizeof(bits));
  return P::value(bits);
}

// ---- quantize / dequantize bodies -----------------------------------------------------------

template <class P>
void quantize_body(const float* x, const QuantLayout& q, std::uint8_t* buffer) {
  if (q.num_codes == 0) return;
  std::memset(buffer, 0, static_cast<std::size_t>(q.code_bytes));
  const std::int64_t inner = q.inner;
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(std::max(q.group_size, inner)));
  std::vector<float> lo(static_cast<std::size_t>(inner)), hi(static_cast<std::size_t>(inner));
  std::vector<double> m(static_cast<std::size_t>(inner)), s(static_cast<std::size_t>(inner));

  for (std::int64_t o = 0; o < q.outer; ++o) {
    for (std::int64_t g = 0; g < q.groups_per_line; ++g) {
      const std::int64_t l0 = g * q.group_size;
      const std::int64_t rows = std::min(q.group_size, q.length - l0);
      const std::int64_t group0 = (o * q.groups_per_line + g) * inner;
      const float* base = x + (o * q.length + l0) * inner;
      if (inner == 1) {  // the group is `rows` contiguous elements
        float mn = base[0], mx = base[0];
        for (std::int64_t t = 1; t < rows; ++t) {
          mn = std::min(mn, base[t]);
          mx = std::max(mx, base[t]);
        }
        const typename P::Bits m_bits = P::floor(mn);
        const typename P::Bits s_bits = largest_scale<P>(mx, P::value(m_bits));
        store_param(buffer, q.mins_offset, group0, m_bits);
        store_param(buffer, q.scales_offset, group0, s_bits);
        const double md = static_cast<double>(P::value(m_bits));
        const double sd = static_cast<double>(P::value(s_bits));
        for (std::int64_t t = 0; t < rows; ++t)
          codes[static_cast<std::size_t>(t)] = code_of(base[t], md, sd);
        put_codes(codes.data(), rows, o * q.padded_length + l0, buffer);
        continue;
      }
      // `inner` groups side by side: reduce the `rows` rows elementwise.
      std::copy(base, base + inner, lo.begin());
      std::copy(base, base + inner, hi.begin());
      for (std::int64_t r = 1; r < rows; ++r) {
        const float* row = base + r * inner;
        for (std::int64_t i = 0; i < inner; ++i) {
          lo[static_cast<std::size_t>(i)] = std::min(lo[static_cast<std::size_t>(i)], row[i]);
          hi[static_cast<std::size_t>(i)] = std::max(hi[static_cast<std::size_t>(i)], row[i]);
        }
      }
      for (std::int64_t i = 0; i < inner; ++i) {
        const auto ui = static_cast<std::size_t>(i);
        const typename P::Bits m_bits = P::floor(lo[ui]);
        const typename P::Bits s_bits = largest_scale<P>(hi[ui], P::value(m_bits));
        store_param(buffer, q.mins_offset, group0 + i, m_bits);
        store_param(buffer, q.scales_offset, group0 + i, s_bits);
        m[ui] = static_cast<double>(P::value(m_bits));
        s[ui] = static_cast<double>(P::value(s_bits));
      }
      for (std::int64_t r = 0; r < rows; ++r) {
        const float* row = base + r * inner;
        for (std::int64_t i = 0; i < inner; ++i) {
          const auto ui = static_cast<std::size_t>(i);
          codes[ui] = code_of(row[i], m[ui], s[ui]);
        }
        put_codes(codes.data(), inner, (o * q.padded_length + l0 + r) * inner, buffer);
      }
    }
  }
}

template <class P>
void dequantize_body(const std::uint8_t* buffer, const QuantLayout& q, float* out) {
  if (q.num_codes == 0) return;
  const std::int64_t inner = q.inner;
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(std::max(q.group_size, inner)));
  std::vector<float> m(static_cast<std::size_t>(inner)), s(static_cast<std::size_t>(inner));

  for (std::int64_t o = 0; o < q.outer; ++o) {
    for (std::int64_t g = 0; g < q.groups_per_line; ++g) {
      const std::int64_t l0 = g * q.group_size;
      const std::int64_t rows = std::min(q.group_size, q.length - l0);
      const std::int64_t group0 = (o * q.groups_per_line + g) * inner;
      float* base = out + (o * q.length + l0) * inner;
      if (inner == 1) {
        const float mg = load_param<P>(buffer, q.mins_offset, group0);
        const float sg = load_param<P>(buffer, q.scales_offset, group0);
        get_codes(buffer, rows, o * q.padded_length + l0, codes.data());
        for (std::int64_t t = 0; t < rows; ++t) {
          base[t] = static_cast<float>(codes[static_cast<std::size_t>(t)]) / sg + mg;
        }
        continue;
      }
      for (std::int64_t i = 0; i < inner; ++i) {
        m[static_cast<std::size_t>(i)] = load_param<P>(buffer, q.mins_offset, group0 + i);
        s[static_cast<std::size_t>(i)] = load_param<P>(buffer, q.scales_offset, group0 + i);
      }
      for (std::int64_t r = 0; r < rows; ++r) {
        float* row = base + r * inner;
        get_codes(buffer, inner, (o * q.padded_length + l0 + r) * inner, codes.data());
        for (std::int64_t i = 0; i < inner; ++i) {
          const auto ui = static_cast<std::size_t>(i);
          row[i] = static_cast<float>(codes[ui]) / s[ui] + m[ui];
        }
      }
    }
  }
}

// ---- checks
// --------------------------------------------------------------------------------------

std::string index_to_string(std::int64_t flat, const Shape& shape) {
  Shape index(shape.size());
  for (std::size_t d = shape.size(); d-- > 0;) {
    index[d] = flat % shape[d];
    flat /= shape[d];
  }
  return shape_to_string(index);
}

// Every value must be finite and within the parameter type's range; reports the first that is not.
void check_values(std::span<const float> x, const Shape& shape, ScaleType type) {
  const float limit =
      type == ScaleType::kFloat32 ? F32Params::kMaxAbsInput : F16Params::kMaxAbsInput;
  constexpr std::size_t kChunk = 4096;
  for (std::size_t start = 0; start < x.size(); start += kChunk) {
    const std::size_t end = std::min(x.size(), start + kChunk);
    bool bad = false;
    for (std::size_t k = start; k < end; ++k) bad |= !(std::fabs(x[k]) <= limit);  // NaN fails too
    if (!bad) continue;
    for (std::size_t k = start; k < end; ++k) {
      const float v = x[k];
      if (std::fabs(v) <= limit) continue;
      const std::string where =
          str_cat("quantize: element ", index_to_string(static_cast<std::int64_t>(k), shape),
                  " of a ", shape_to_string(shape), " tensor is ", v);
      if (!std::isfinite(v)) fail(where, "; only finite values can be quantized");
      fail(where, ", outside the range +-", limit, " allowed with ", scale_type_name(type),
           " group parameters");
    }
  }
}

std::int64_t checked_mul(std::int64_t a, std::int64_t b, const Shape& shape) {
  std::int64_t r = 0;
  FLEXGEN_REQUIRE(!__builtin_mul_overflow(a, b, &r), "quantize: shape ", shape_to_string(shape),
                  " is too large");
  return r;
}

}  // namespace

const char* scale_type_name(ScaleType type) { return type == ScaleType::kFloat32 ? "f32" : "f16"; }

Bytes scale_type_bytes(ScaleType type) { return type == ScaleType::kFloat32 ? 4 : 2; }

QuantSpec weight_quant_spec(ScaleType scale_type) {
  return QuantSpec{.group_size = 64, .axis = 0, .scale_type = scale_type};
}

QuantSpec cache_quant_spec(ScaleType scale_type) {
  return QuantSpec{.group_size = 64, .axis = -1, .scale_type = scale_type};
}

QuantLayout quant_layout(const Shape& shape, const QuantSpec& spec) {
  const auto rank = static_cast<std::int64_t>(shape.size());
  FLEXGEN_REQUIRE(rank >= 1, "quantize: a tensor of shape [] has no axis to group along");
  for (std::int64_t d : shape) {
    FLEXGEN_REQUIRE(d >= 0, "quantize: shape ", shape_to_string(shape),
                    " has a negative dimension");
  }
  FLEXGEN_REQUIRE(spec.group_size >= 1, "quantize: group_size ", spec.group_size, " must be >= 1");
  FLEXGEN_REQUIRE(spec.axis >= -rank && spec.axis < rank, "quantize: axis ", spec.axis,
                  " is out of range for shape ", shape_to_string(shape));
  const std::int64_t axis = spec.axis < 0 ? spec.axis + rank : spec.axis;

  QuantLayout q;
  q.outer = 1;
  q.inner = 1;
  for (std::int64_t d = 0; d < axis; ++d)
    q.outer = checked_mul(q.outer, shape[static_cast<std::size_t>(d)], shape);
  for (std::int64_t d = axis + 1; d < rank; ++d)
    q.inner = checked_mul(q.inner, shape[static_cast<std::size_t>(d)], shape);
  q.length = shape[static_cast<std::size_t>(axis)];
  q.group_size = spec.group_size;
  q.groups_per_line = q.length / q.group_size + (q.length % q.group_size != 0 ? 1 : 0);
  q.padded_length = checked_mul(q.groups_per_line, q.group_size, shape);
  q.num_groups = checked_mul(checked_mul(q.outer, q.groups_per_line, shape), q.inner, shape);
  q.num_codes = checked_mul(checked_mul(q.outer, q.padded_length, shape), q.inner, shape);
  q.param_bytes = scale_type_bytes(spec.scale_type);
  q.code_bytes = q.num_codes / 2 + q.num_codes % 2;
  q.mins_offset = q.code_bytes;
  q.scales_offset = q.mins_offset + checked_mul(q.num_groups, q.param_bytes, shape);
  q.total_bytes = q.scales_offset + q.num_groups * q.param_bytes;
  FLEXGEN_REQUIRE(q.total_bytes >= q.scales_offset, "quantize: shape ", shape_to_string(shape),
                  " is too large");
  return q;
}

Bytes quantized_bytes(const Shape& shape, const QuantSpec& spec) {
  return quant_layout(shape, spec).total_bytes;
}

void quantize(std::span<const float> x, const Shape& shape, const QuantSpec& spec,
              std::span<std::byte> out) {
  const QuantLayout q = quant_layout(shape, spec);
  const std::int64_t numel = q.outer * q.length * q.inner;
  FLEXGEN_REQUIRE(static_cast<std::int64_t>(x.size()) == numel, "quantize: input holds ", x.size(),
                  " floats but shape ", shape_to_string(shape), " needs ", numel);
  FLEXGEN_REQUIRE(static_cast<Bytes>(out.size()) == q.total_bytes, "quantize: output buffer holds ",
                  out.size(), " bytes but shape ", shape_to_string(shape), " needs ",
                  q.total_bytes);
  check_values(x, shape, spec.scale_type);
  auto* buffer = reinterpret_cast<std::uint8_t*>(out.data());
  if (spec.scale_type == ScaleType::kFloat32) {
    quantize_body<F32Params>(x.data(), q, buffer);
  } else {
    quantize_body<F16Params>(x.data(), q, buffer);
  }
}

void dequantize(std::span<const std::byte> in, const Shape& shape, const QuantSpec& spec,
                std::span<float> out) {
  const QuantLayout q = quant_layout(shape, spec);
  const std::int64_t numel = q.outer * q.length * q.inner;
  FLEXGEN_REQUIRE(static_cast<Bytes>(in.size()) == q.total_bytes, "dequantize: input buffer holds ",
                  in.size(), " bytes but shape ", shape_to_string(shape), " needs ", q.total_bytes);
  FLEXGEN_REQUIRE(static_cast<std::int64_t>(out.size()) == numel, "dequantize: output holds ",
                  out.size(), " floats but shape ", shape_to_string(shape), " needs ", numel);
  const auto* buffer = reinterpret_cast<const std::uint8_t*>(in.data());
  if (spec.scale_type == ScaleType::kFloat32) {
    dequantize_body<F32Params>(buffer, q, out.data());
  } else {
    dequantize_body<F16Params>(buffer, q, out.data());
  }
}

Tensor fake_quantize(const Tensor& x, const QuantSpec& spec) {
  std::vector<std::byte> buffer(static_cast<std::size_t>(quantized_bytes(x.shape(), spec)));
  quantize(x.span(), x.shape(), spec, buffer);
  Tensor out(x.shape());
  dequantize(buffer, x.shape(), spec, out.span());
  return out;
}

}  // namespace flexgen
