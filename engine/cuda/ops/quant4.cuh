#pragma once
// 4-bit group-wise quantization on the GPU, bit-exact with the host implementation in
// engine/compress/quant4.h (its header defines the buffer layout and the arithmetic).
// Host-includable declarations; device pointers.
#include <cstddef>
#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "engine/compress/quant4.h"

namespace flexgen::cuda {

// Dequantizes a buffer written by flexgen::quantize(x, shape, spec) (any shape, axis and group
// size) into out (shape_numel(shape) values): x' = (float(q) / s) + m with __fdiv_rn and
// __fadd_rn, so the fp32 output equals the host's dequantize bit for bit and the fp16 output is
// that value rounded to nearest even. Throws flexgen::Error for a bad shape or spec (as
// quant_layout).
// Launch: when the dims after the axis hold a multiple of 8 elements (a weight [out, in] grouped
// along axis 0 with in % 8 == 0) and the buffer, the parameter arrays and out are 16-byte aligned:
// block (<= 128, 256 / that) threads, each taking 8 consecutive codes of each of 8 consecutive
// lines (a 4-byte code load and a 16- or 32-byte store per line; the 8 groups' parameters loaded
// with 16- or 32-byte loads once per group the strip touches), strips over grid.y.
// Otherwise a grid-stride loop with one element per thread.
void dequantize(const std::byte* in, const Shape& shape, const QuantSpec& spec, __half* out,
                cudaStream_t stream);
void dequantize(const std::byte* in, const Shape& shape, const QuantSpec& spec, float* out,
                cudaStream_t stream);

// KV cache rows, each quantized on its own as the runtime stores them: row r is the buffer of
// flexgen::quantize(row, Shape{1, head_dim}, spec), row_bytes = quantized_bytes(Shape{1, head_dim},
// spec) long, at in + r * row_bytes (spec: cache_quant_spec, the grouped axis the last).
// Throws flexgen::Error for a bad spec, an axis other than the last or an odd group size.
// Launch: blocks of 64 x 4 threads, one code byte (two values) per thread, 4 rows per block.
void dequantize_rows(const std::byte* in, std::int64_t rows, std::int64_t head_dim,
                     const QuantSpec& spec, __half* out, cudaStream_t stream);

// Quantizes `rows` rows of head_dim fp16 values (x: [rows, head_dim]) into row buffers as above.
// The codes and parameters equal the host's quantize of the same values byte for byte: the
// group's min (the first of equal minima, so the sign of a zero minimum matches) and max in fp32,
// m rounded down to the parameter type, s found with the host's exact test (TwoSum in float64),
// q = round-half-even((x - m) * s) in float64. Inputs must be finite (fp16 values always are
// within the float16 parameter range). Same errors as dequantize_rows.
// Launch: one warp per (row, group), 4 warps per block.
void quantize_rows(const __half* x, std::int64_t rows, std::int64_t head_dim, const QuantSpec& spec,
                   std::byte* out, cudaStream_t stream);

}  // namespace flexgen::cuda
