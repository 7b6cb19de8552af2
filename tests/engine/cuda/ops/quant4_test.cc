// The CUDA 4-bit kernels against the host implementation (engine/compress/quant4.h): dequantized
// values bit for bit (fp32, and fp16 = the host's float rounded to nearest even), quantized row
// buffers byte for byte.
#include <gtest/gtest.h>

#ifdef FLEXGEN_HAVE_CUDA
#include <cstddef>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>

#include "engine/compress/quant4.h"
#include "engine/core/error.h"
#include "engine/cuda/device_info.h"
#include "engine/cuda/ops/host_calls.h"
#include "engine/tensor/tensor.h"
#include "tests/engine/cuda/ops/op_test_util.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using testing::random_halves;

std::uint32_t bits_of(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

struct TensorCase {
  Shape shape;
  int axis;
  int group;
};

TEST(CudaQuant4, DequantizeMatchesHostBitForBit) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(51);
  const std::vector<TensorCase> cases = {
      {{256, 64}, 0, 64},     // weight, fast path
      {{100, 72}, 0, 64},     // a short last group
      {{64, 8}, 0, 64},
      {{130, 40}, 0, 64},     // two groups per line, the second short
      {{512, 1024}, 0, 64},
      {{50, 7}, 0, 64},       // inner % 8 != 0: generic path
      {{3, 70, 16}, 1, 64},   // rank 3, outer 3: fast path, strips of 8 lines cross lines
      {{3, 50, 16}, 1, 12},   // fast path, strips cross groups of 12
      {{2, 37, 8}, 1, 6},     // fast path, groups of 6, one 8-column chunk
      {{5, 130}, -1, 64},     // grouped along the last axis (inner 1)
      {{33, 24}, 0, 5}};      // odd group size
  for (const TensorCase& c : cases) {
    for (ScaleType type : {ScaleType::kFloat16, ScaleType::kFloat32}) {
      SCOPED_TRACE(::testing::Message() << shape_to_string(c.shape) << " axis " << c.axis << " group "
                                        << c.group << " " << scale_type_name(type));
      const QuantSpec spec{c.group, c.axis, type};
      const std::vector<float> x = random_halves(static_cast<std::size_t>(shape_numel(c.shape)), rng, 0.02f);
      std::vector<std::byte> buffer(static_cast<std::size_t>(quantized_bytes(c.shape, spec)));
      quantize(x, c.shape, spec, buffer);
      std::vector<float> ref(x.size());
      dequantize(buffer, c.shape, spec, ref);
      const std::vector<float> out32 = cuda::on_host::dequantize_f32(buffer, c.shape, spec);
      const std::vector<std::uint16_t> out16 = cuda::on_host::dequantize_f16(buffer, c.shape, spec);
      ASSERT_EQ(out32.size(), ref.size());
      ASSERT_EQ(out16.size(), ref.size());
      for (std::size_t i = 0; i < ref.size(); ++i) {
        ASSERT_EQ(bits_of(out32[i]), bits_of(ref[i])) << "element " << i;
        ASSERT_EQ(out16[i], float_to_half(ref[i])) << "element " << i;
      }
    }
  }
}

// Rows as the runtime stores them: each quantized alone with Shape{1, head_dim}.
std::vector<std::byte> host_rows(const std::vector<float>& x, std::int64_t rows, std::int64_t head_dim,
                                 const QuantSpec& spec) {
  const auto row_bytes = static_cast<std::size_t>(quantized_bytes(Shape{1, head_dim}, spec));
  std::vector<std::byte> out(static_cast<std::size_t>(rows) * row_bytes);
  for (std::int64_t r = 0; r < rows; ++r) {
    quantize(std::span<const float>(x).subspan(static_cast<std::size_t>(r * head_dim),
                                               static_cast<std::size_t>(head_dim)),
             Shape{1, head_dim}, spec,
             std::span<std::byte>(out).subspan(static_cast<std::size_t>(r) * row_bytes, row_bytes));
  }
  return out;
}

// Rows that exercise the corners: constant groups, a -0 minimum before a +0, +0 before -0,
// the fp16 extremes, tiny ranges, all-negative rows.
std::vector<float> corner_rows(std::int64_t rows, std::int64_t head_dim, std::mt19937& rng) {
  std::vector<float> x = random_halves(static_cast<std::size_t>(rows * head_dim), rng, 1.0f);
  auto row = [&](std::int64_t r) { return x.begin() + r * head_dim; };
  for (std::int64_t r = 0; r < rows; ++r) {
    switch (r % 8) {
      case 0: std::fill(row(r), row(r) + head_dim, 0.375f); break;
      case 1:
        for (std::int64_t i = 0; i < head_dim; ++i) row(r)[i] = std::abs(row(r)[i]);
        row(r)[3 % head_dim] = -0.0f;
        row(r)[(head_dim - 1)] = 0.0f;
        break;
      case 2:
        for (std::int64_t i = 0; i < head_dim; ++i) row(r)[i] = std::abs(row(r)[i]);
        row(r)[0] = 0.0f;
        row(r)[head_dim / 2] = -0.0f;
        break;
      case 3:
        row(r)[0] = 65504.0f;
        row(r)[head_dim - 1] = -65504.0f;
        break;
      case 4:
        for (std::int64_t i = 0; i < head_dim; ++i)
          row(r)[i] = testing::to_half_value(1.0f + static_cast<float>(i % 3) * 0x1p-10f);
        break;
      case 5:
        for (std::int64_t i = 0; i < head_dim; ++i) row(r)[i] = -std::abs(row(r)[i]) * 300.0f;
        for (std::int64_t i = 0; i < head_dim; ++i) row(r)[i] = testing::to_half_value(row(r)[i]);
        break;
      default: break;  // plain random rows
    }
  }
  return x;
}

TEST(CudaQuant4, QuantizeRowsMatchesHostByteForByte) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(52);
  for (std::int64_t head_dim : {128, 80, 48, 200, 64, 2}) {
    for (ScaleType type : {ScaleType::kFloat16, ScaleType::kFloat32}) {
      for (int group : {64, 4}) {
        SCOPED_TRACE(::testing::Message() << "head_dim " << head_dim << " group " << group << " "
                                          << scale_type_name(type));
        const QuantSpec spec{group, -1, type};
        const std::int64_t rows = 67;
        const std::vector<float> x = corner_rows(rows, head_dim, rng);
        const std::vector<std::byte> ref = host_rows(x, rows, head_dim, spec);
        const std::vector<std::byte> out = cuda::on_host::quantize_rows(x, rows, head_dim, spec);
        ASSERT_EQ(out.size(), ref.size());
        for (std::size_t i = 0; i < ref.size(); ++i)
          ASSERT_EQ(static_cast<int>(out[i]), static_cast<int>(ref[i])) << "byte " << i;
      }
    }
  }
}

TEST(CudaQuant4, DequantizeRowsMatchesHostBitForBit) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  std::mt19937 rng(53);
  for (std::int64_t head_dim : {128, 80, 48, 200, 7}) {
    for (ScaleType type : {ScaleType::kFloat16, ScaleType::kFloat32}) {
      SCOPED_TRACE(::testing::Message() << "head_dim " << head_dim << " " << scale_type_name(type));
      const QuantSpec spec = cache_quant_spec(type);
      const std::int64_t rows = 45;
      const std::vector<float> x = corner_rows(rows, head_dim, rng);
      const std::vector<std::byte> buffer = host_rows(x, rows, head_dim, spec);
      const auto row_bytes = static_cast<std::size_t>(quantized_bytes(Shape{1, head_dim}, spec));
      const std::vector<std::uint16_t> out = cuda::on_host::dequantize_rows(buffer, rows, head_dim, spec);
      ASSERT_EQ(out.size(), x.size());
      std::vector<float> ref(static_cast<std::size_t>(head_dim));
      for (std::int64_t r = 0; r < rows; ++r) {
        dequantize(std::span<const std::byte>(buffer).subspan(static_cast<std::size_t>(r) * row_bytes, row_bytes),
                   Shape{1, head_dim}, spec, ref);
        for (std::int64_t i = 0; i < head_dim; ++i)
          ASSERT_EQ(out[static_cast<std::size_t>(r * head_dim + i)], float_to_half(ref[static_cast<std::size_t>(i)]))
              << "row " << r << " element " << i;
      }
    }
  }
}

TEST(CudaQuant4, RowKernelsRejectUnsupportedSpecs) {
  if (list_gpus().empty()) GTEST_SKIP() << "no GPU";
  const std::vector<float> x(2 * 16, 0.5f);
  const std::vector<std::byte> buffer(2 * 64);
  auto message = [&](const QuantSpec& spec, bool quantize_op) {
    try {
      if (quantize_op) {
        cuda::on_host::quantize_rows(x, 2, 16, spec);
      } else {
        cuda::on_host::dequantize_rows(buffer, 2, 16, spec);
      }
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(message(QuantSpec{5, -1, ScaleType::kFloat16}, true),
              HasSubstr("quantize_rows: the CUDA kernels need an even group_size, got 5"));
  EXPECT_THAT(message(QuantSpec{8, 0, ScaleType::kFloat16}, false),
              HasSubstr("dequantize_rows: cache rows are grouped along their last axis, not axis 0"));
  EXPECT_THAT(message(QuantSpec{0, -1, ScaleType::kFloat16}, true), HasSubstr("group_size 0"));
}

}  // namespace
}  // namespace flexgen

#else
TEST(CudaQuant4, SkippedWithoutCudaBackend) { GTEST_SKIP() << "built without the CUDA backend"; }
#endif
