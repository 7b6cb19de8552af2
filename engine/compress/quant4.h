#pragma once
// 4-bit group-wise asymmetric min-max quantization: FlexGen's compression of weights and KV cache,
// host implementation. The quantized form is one contiguous byte buffer that the runtime moves
// between memory tiers as it is.
//
// Grouping. A row-major tensor of shape `shape` is viewed as [outer, length, inner], where
// length = shape[axis], outer = product of the dims before `axis`, inner = product of the dims
// after it. A group is G = group_size consecutive elements along `axis` with every other index
// fixed: group (o, g, i) holds elements (o, g*G + t, i), t = 0..G-1. When length is not a multiple
// of G, the last group of each line is short: the missing positions are padding. Padding takes no
// part in the group's min/max (FlexGen pads with zeros that do take part), is never read from the
// input, has code 0 in the buffer and is never written to the output.
//   Weights, [out, in] as HF stores them:  axis 0 (the output channel; FlexGen's group_dim = 0),
//                                          so a group is 64 output channels of one input column.
//   KV cache [..., head_dim]:               axis -1 (the head dimension; FlexGen's group_dim = 2).
// A negative axis counts from the end, as in Python.
//
// Per group, with T the ScaleType (float32 or float16) in which the group's parameters are stored:
//   m = the largest T value <= min(group)                 (float32: m == min exactly)
//   s = the largest T value with s * (max(group) - m) <= 15 exactly, capped at T's largest finite
//       value (float32: FLT_MAX, float16: 65504). A constant group has max == m when min is a T
//       value, so s = the cap: no division by zero and no special case anywhere.
//   q = round_half_to_even(clamp((x - m) * s, 0, 15))     evaluated in float64 (as torch.round)
//   x' = (float(q) / s) + m                                evaluated in float32, each operation
//                                                          rounded to nearest even, no FMA
// (FlexGen computes m and s in the model's dtype with round-to-nearest; rounding m down and s down
// instead is what keeps every x inside [m, m + 15/s], so no element is ever clamped.)
// A constant group whose value is a T value comes back exactly (q = 0, x' = 0/s + m = m; the sign
// of a zero is not kept).
//
// Guaranteed error, for every element x and the stored (rounded) m and s of its group:
//   (a) 0 <= (x - m) * s <= 15 exactly, so no element is clamped;
//   (b) |x - x'| <= (0.5 + 2^-19) / s + 2^-24 * |x|
//       (0.5/s from the rounding of q; the rest covers the float64 evaluation of q and the two
//       float32 roundings of the dequantization);
//   (c) 1/s <= max((max - m) / 15 * (1 + 2^(1-p)), 1/cap), p = 23 for float32, 10 for float16;
//   (d) min - m = 0 for float32; 0 <= min - m < one float16 spacing at min for float16 (0 when
//       min is a float16 value, as in an fp16 model).
// Combined, from the data alone, with delta = min - m:
//   |x - x'| <= (0.5 + 2^-19) * max((max - min + delta) / 15 * (1 + 2^(1-p)), 1/cap) + 2^-24 |x|,
// i.e. FlexGen's half step 0.5 * (max - min) / 15 up to a relative 2^(1-p), plus delta/30 (float16
// only), except for ranges so small that 15/range exceeds the cap (float16: range < 15/65504 =
// 2.3e-4), where the bound is (0.5 + 2^-19) / cap (7.6e-6 for float16).
//
// Reproducing it elsewhere (the CUDA port): the dequantization is bit-exact with __fdiv_rn and
// __fadd_rn (no contraction into an FMA). q in float64 is bit-exact; q in float32 differs by one
// only where (x - m) * s lies within about 2e-6 of a half-integer, and (b) then holds with 2^-18 in
// place of 2^-19. The host code assumes the default rounding mode (to nearest).
//
// Byte layout of the buffer (little-endian), for num_codes = outer * padded_length * inner,
// padded_length = ceil(length / G) * G, num_groups = outer * ceil(length / G) * inner:
//   [0, code_bytes)                 the codes of the zero-padded tensor [outer, padded_length,
//                                   inner] in row-major order, two per byte: code k sits in byte
//                                   k/2, in the low nibble when k is even, the high nibble when k
//                                   is odd; code_bytes = ceil(num_codes / 2); a spare high nibble
//                                   at the end is 0.
//   [mins_offset, +num_groups*sizeof(T))    m of every group, in the row-major order of the
//                                   [outer, ceil(length / G), inner] tensor of groups.
//   [scales_offset, +num_groups*sizeof(T))  s of every group, same order.
//   quantized_bytes = ceil(num_codes / 2) + 2 * num_groups * sizeof(T).
// num_codes = num_groups * G, so for even G code_bytes = num_groups * G / 2; with G a multiple of
// 8 (64 by default) that is a multiple of 4 bytes and both parameter arrays are naturally aligned
// (relative to the buffer's start) for float32 and float16 loads. Other group sizes work on the
// host, which reads the parameters with memcpy.
//
// Why codes in the tensor's own order, also for axis 0 (rather than a transposed layout with each
// group's codes contiguous): the codes are then a 4-bit image of the (padded) dense tensor, and
// the parameters a dense [outer, groups, inner] tensor. A dequantizing kernel with one thread per
// code byte reads codes, parameters and writes outputs with consecutive threads at consecutive
// addresses along the last axis, for either grouping axis; a fused dequant-GEMM loads a tile of
// W [out, in] codes exactly like a tile of W, plus the matching [out/G, in] tile of parameters.
// A transposed layout would make each group's 32 bytes contiguous but every output write strided
// by `in`. When axis is the last axis the two layouts coincide: each group is 32 contiguous bytes.
//
// Input values must be finite; float32 parameters need |x| <= 2^125 (so that 15/s and the
// dequantized values cannot overflow float32), float16 parameters |x| <= 65504 (so that m is a
// finite float16). Anything else is rejected with flexgen::Error (a NaN or inf in a weight is a
// broken model, in the KV cache a broken computation).
#include <cstddef>
#include <cstdint>
#include <span>

#include "engine/core/units.h"
#include "engine/tensor/tensor.h"

namespace flexgen {

inline constexpr int kQuantBits = 4;
inline constexpr int kQuantMaxCode = 15;  // 2^kQuantBits - 1

// The type in which each group's m and s are stored: float32 for f32 models, float16 for fp16.
enum class ScaleType { kFloat32, kFloat16 };
const char* scale_type_name(ScaleType type);  // "f32", "f16"
Bytes scale_type_bytes(ScaleType type);       // 4, 2

struct QuantSpec {
  int group_size = 64;  // G, >= 1
  int axis = 0;         // the grouped axis; negative counts from the end
  ScaleType scale_type = ScaleType::kFloat32;
};

// FlexGen's two configurations.
QuantSpec weight_quant_spec(ScaleType scale_type);  // G = 64 along axis 0 (output channels)
QuantSpec cache_quant_spec(ScaleType scale_type);   // G = 64 along the last axis (head_dim)

// The geometry of a quantized tensor (see the layout above). All counts are elements, groups or
// bytes as named.
struct QuantLayout {
  std::int64_t outer = 0;            // product of the dims before the axis
  std::int64_t length = 0;           // shape[axis]
  std::int64_t inner = 0;            // product of the dims after the axis
  std::int64_t group_size = 0;       // G
  std::int64_t groups_per_line = 0;  // ceil(length / G)
  std::int64_t padded_length = 0;    // groups_per_line * G
  std::int64_t num_groups = 0;       // outer * groups_per_line * inner
  std::int64_t num_codes = 0;        // outer * padded_length * inner
  Bytes param_bytes = 0;             // sizeof(T): 4 or 2
  Bytes code_bytes = 0;              // ceil(num_codes / 2)
  Bytes mins_offset = 0;             // == code_bytes
  Bytes scales_offset = 0;           // mins_offset + num_groups * param_bytes
  Bytes total_bytes = 0;             // scales_offset + num_groups * param_bytes
};

// Validates the shape (rank >= 1, dims >= 0) and the spec (group_size >= 1, axis in range);
// throws flexgen::Error naming what is wrong.
QuantLayout quant_layout(const Shape& shape, const QuantSpec& spec);

// The size of the quantized buffer: ceil(num_codes / 2) + 2 * num_groups * sizeof(T).
Bytes quantized_bytes(const Shape& shape, const QuantSpec& spec);

// Quantizes x (row-major, shape `shape`) into `out`, which must hold exactly
// quantized_bytes(shape, spec) bytes. Throws flexgen::Error for a bad shape/spec, a size mismatch
// or a value outside the accepted range (naming the element's index and value); `out` is not
// written to in that case.
void quantize(std::span<const float> x, const Shape& shape, const QuantSpec& spec,
              std::span<std::byte> out);

// Dequantizes a buffer written by quantize with the same shape and spec into `out` (row-major,
// shape_numel(shape) floats). Throws flexgen::Error for a bad shape/spec or a size mismatch.
void dequantize(std::span<const std::byte> in, const Shape& shape, const QuantSpec& spec,
                std::span<float> out);

// dequantize(quantize(x)): the transform that compression applies to a tensor, used as the
// reference for compressed runs.
Tensor fake_quantize(const Tensor& x, const QuantSpec& spec);

}  // namespace flexgen
