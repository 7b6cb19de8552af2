#include "engine/cuda/ops/quant4.cuh"

#include <algorithm>
#include <cfloat>
#include <climits>

#include "engine/cuda/cuda_check.cuh"
#include "engine/cuda/ops/device_utils.cuh"

namespace flexgen::cuda {
namespace {

// ---- group parameters, read byte by byte (any alignment) or 16 bytes at a time ----------------

template <bool kF16>
__device__ __forceinline__ float load_param(const std::uint8_t* p) {
  if constexpr (kF16) {
    const auto bits = static_cast<unsigned short>(p[0] | (p[1] << 8));
    return __half2float(__ushort_as_half(bits));
  } else {
    const unsigned bits = static_cast<unsigned>(p[0]) | (static_cast<unsigned>(p[1]) << 8) |
                          (static_cast<unsigned>(p[2]) << 16) | (static_cast<unsigned>(p[3]) << 24);
    return __uint_as_float(bits);
  }
}

// Eight consecutive parameters at a 16-byte aligned address.
template <bool kF16>
__device__ __forceinline__ void load_param8(const std::uint8_t* p, float (&f)[8]) {
  if constexpr (kF16) {
    detail::half8_to_float(*reinterpret_cast<const uint4*>(p), f);
  } else {
    const float4* v = reinterpret_cast<const float4*>(p);
    const float4 a = v[0];
    const float4 b = v[1];
    f[0] = a.x;
    f[1] = a.y;
    f[2] = a.z;
    f[3] = a.w;
    f[4] = b.x;
    f[5] = b.y;
    f[6] = b.z;
    f[7] = b.w;
  }
}

// x' = (float(q) / s) + m, each operation rounded to nearest even, never contracted.
__device__ __forceinline__ float dequant_value(unsigned code, float s, float m) {
  return __fadd_rn(__fdiv_rn(static_cast<float>(code), s), m);
}

__device__ __forceinline__ void store_value(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_value(__half* p, float v) { *p = __float2half_rn(v); }

__device__ __forceinline__ void store8(float* p, const float (&v)[8]) {
  float4* o = reinterpret_cast<float4*>(p);
  o[0] = make_float4(v[0], v[1], v[2], v[3]);
  o[1] = make_float4(v[4], v[5], v[6], v[7]);
}
__device__ __forceinline__ void store8(__half* p, const float (&v)[8]) {
  *reinterpret_cast<uint4*>(p) = detail::float8_to_half(v);
}

// The geometry the kernels need (quant4.h's QuantLayout in kernel-friendly form).
struct Geometry {
  std::int64_t lines = 0;  // outer * length
  std::int64_t length = 0;
  std::int64_t inner = 0;
  std::int64_t group = 0;
  std::int64_t groups_per_line = 0;
  std::int64_t padded_length = 0;
  std::int64_t mins_offset = 0;
  std::int64_t scales_offset = 0;
};

Geometry geometry_of(const QuantLayout& q) {
  Geometry g;
  g.lines = q.outer * q.length;
  g.length = q.length;
  g.inner = q.inner;
  g.group = q.group_size;
  g.groups_per_line = q.groups_per_line;
  g.padded_length = q.padded_length;
  g.mins_offset = q.mins_offset;
  g.scales_offset = q.scales_offset;
  return g;
}

// ---- tensor dequantization --------------------------------------------------------------------

// inner % 8 == 0: thread x takes codes 8c .. 8c + 7 (one 4-byte load; the code index of the
// first is a multiple of 8) of kLinesPerThread consecutive lines, their 8 groups' parameters
// (consecutive; reloaded only when the strip enters another group) and 8 outputs per line.
constexpr int kLinesPerThread = 8;

template <bool kF16, typename Out>
__global__ void dequantize_fast_kernel(const std::uint8_t* __restrict__ in, const Geometry g,
                                       Out* __restrict__ out) {
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t i0 = c * 8;
  if (i0 >= g.inner) return;
  constexpr int kParamBytes = kF16 ? 2 : 4;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.y) * blockDim.y * kLinesPerThread;
  for (std::int64_t first =
           (static_cast<std::int64_t>(blockIdx.y) * blockDim.y + threadIdx.y) * kLinesPerThread;
       first < g.lines; first += step) {
    // (o, l) of the line, the group of l within its line, l's place in that group.
    std::int64_t o = first / g.length;
    std::int64_t l = first - o * g.length;
    std::int64_t group_in_line = l / g.group;
    std::int64_t in_group = l - group_in_line * g.group;
    std::int64_t loaded = -1;  // the parameter row held in m, s
    float m[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    float s[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    const std::int64_t last = detail::min64(first + kLinesPerThread, g.lines);
    for (std::int64_t line = first; line < last; ++line) {
      const std::int64_t param_row = o * g.groups_per_line + group_in_line;
      if (param_row != loaded) {
        const std::int64_t param_index = param_row * g.inner + i0;
        load_param8<kF16>(in + g.mins_offset + param_index * kParamBytes, m);
        load_param8<kF16>(in + g.scales_offset + param_index * kParamBytes, s);
        loaded = param_row;
      }
      const std::int64_t code_index = (o * g.padded_length + l) * g.inner + i0;
      const unsigned word = *reinterpret_cast<const unsigned*>(in + code_index / 2);
      float v[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) v[e] = dequant_value((word >> (4 * e)) & 15u, s[e], m[e]);
      store8(out + line * g.inner + i0, v);
      if (++in_group == g.group) {
        in_group = 0;
        ++group_in_line;
      }
      if (++l == g.length) {
        l = 0;
        group_in_line = 0;
        in_group = 0;
        ++o;
      }
    }
  }
}

template <bool kF16, typename Out>
__global__ void dequantize_generic_kernel(const std::uint8_t* __restrict__ in, const Geometry g,
                                          std::int64_t numel, Out* __restrict__ out) {
  constexpr int kParamBytes = kF16 ? 2 : 4;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < numel;
       e += step) {
    const std::int64_t i = e % g.inner;
    const std::int64_t rest = e / g.inner;
    const std::int64_t l = rest % g.length;
    const std::int64_t o = rest / g.length;
    const std::int64_t code_index = (o * g.padded_length + l) * g.inner + i;
    const unsigned byte = in[code_index >> 1];
    const unsigned code = (code_index & 1) != 0 ? byte >> 4 : byte & 15u;
    const std::int64_t param_index = (o * g.groups_per_line + l / g.group) * g.inner + i;
    const float m = load_param<kF16>(in + g.mins_offset + param_index * kParamBytes);
    const float s = load_param<kF16>(in + g.scales_offset + param_index * kParamBytes);
    store_value(out + e, dequant_value(code, s, m));
  }
}

template <bool kF16, typename Out>
void launch_dequantize(const std::uint8_t* in, const QuantLayout& layout, Out* out,
                       cudaStream_t stream) {
  const Geometry g = geometry_of(layout);
  const std::int64_t numel = g.lines * g.inner;
  if (numel == 0) return;
  const bool fast = g.inner % 8 == 0 && g.mins_offset % 16 == 0 && g.scales_offset % 16 == 0 &&
                    detail::aligned_to(in, 16) && detail::aligned_to(out, 16);
  if (fast) {
    const std::int64_t chunks = g.inner / 8;
    const int bx = static_cast<int>(std::clamp<std::int64_t>((chunks + 31) / 32 * 32, 32, 128));
    const int by = 256 / bx;
    const auto gx = static_cast<unsigned>((chunks + bx - 1) / bx);
    const std::int64_t strips = (g.lines + kLinesPerThread - 1) / kLinesPerThread;
    const auto gy = static_cast<unsigned>(std::min<std::int64_t>((strips + by - 1) / by, 65535));
    dequantize_fast_kernel<kF16, Out><<<dim3(gx, gy), dim3(bx, by), 0, stream>>>(in, g, out);
  } else {
    constexpr int kThreads = 256;
    const auto blocks = static_cast<unsigned>(
        std::min<std::int64_t>((numel + kThreads - 1) / kThreads, std::int64_t{1} << 20));
    dequantize_generic_kernel<kF16, Out><<<blocks, kThreads, 0, stream>>>(in, g, numel, out);
  }
  FLEXGEN_CUDA_CHECK_LAUNCH(fast ? "dequantize_fast_kernel" : "dequantize_generic_kernel",
                            str_cat("outer*length=", g.lines, " inner=", g.inner, " group=", g.group,
                                    kF16 ? " f16 params" : " f32 params",
                                    sizeof(Out) == 2 ? " -> f16" : " -> f32"));
}

template <typename Out>
void dequantize_any(const std::byte* in, const Shape& shape, const QuantSpec& spec, Out* out,
                    cudaStream_t stream) {
  const QuantLayout layout = quant_layout(shape, spec);
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(in);
  if (spec.scale_type == ScaleType::kFloat16) {
    launch_dequantize<true>(bytes, layout, out, stream);
  } else {
    launch_dequantize<false>(bytes, layout, out, stream);
  }
}

// ---- cache rows ---------------------------------------------------------------------------------

template <bool kF16>
__global__ void dequantize_rows_kernel(const std::uint8_t* __restrict__ in, std::int64_t rows,
                                       int head_dim, int group, std::int64_t row_bytes,
                                       std::int64_t mins_offset, std::int64_t scales_offset,
                                       __half* __restrict__ out) {
  constexpr int kParamBytes = kF16 ? 2 : 4;
  const int bytes_per_row = (head_dim + 1) / 2;  // the code bytes holding real values
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.y;
  for (std::int64_t r = static_cast<std::int64_t>(blockIdx.x) * blockDim.y + threadIdx.y; r < rows;
       r += step) {
    const std::uint8_t* blob = in + r * row_bytes;
    __half* o = out + r * head_dim;
    for (int j = threadIdx.x; j < bytes_per_row; j += blockDim.x) {
      const unsigned byte = blob[j];
      const int e0 = 2 * j;
      const int g = e0 / group;  // e0 + 1 is in the same group (group is even)
      const float m = load_param<kF16>(blob + mins_offset + g * kParamBytes);
      const float s = load_param<kF16>(blob + scales_offset + g * kParamBytes);
      o[e0] = __float2half_rn(dequant_value(byte & 15u, s, m));
      if (e0 + 1 < head_dim) o[e0 + 1] = __float2half_rn(dequant_value(byte >> 4, s, m));
    }
  }
}

// ---- quantization (the host's algorithm, quant4.cc, step for step) -----------------------------

// Exactly whether s * (mx - m) <= 15 (TwoSum; the products are exact in float64).
__device__ __forceinline__ bool scale_covers(float s, float mx, float m) {
  const double a = __dmul_rn(static_cast<double>(s), static_cast<double>(mx));
  const double b = -__dmul_rn(static_cast<double>(s), static_cast<double>(m));
  const double d = __dadd_rn(a, b);
  const double b_virtual = __dsub_rn(d, a);
  const double a_virtual = __dsub_rn(d, b_virtual);
  const double e = __dadd_rn(__dsub_rn(a, a_virtual), __dsub_rn(b, b_virtual));
  return d < 15.0 || (d == 15.0 && e <= 0.0);
}

struct F32Params {
  using Bits = float;
  static __device__ __forceinline__ float cap() { return FLT_MAX; }
  static __device__ __forceinline__ float value(float v) { return v; }
  static __device__ __forceinline__ float nearest(float v) { return v; }
  static __device__ __forceinline__ float floor(float v) { return v; }
  static __device__ __forceinline__ float down(float v) { return nextafterf(v, -INFINITY); }
  static __device__ __forceinline__ float up(float v) { return nextafterf(v, INFINITY); }
  static __device__ __forceinline__ unsigned raw(float v) { return __float_as_uint(v); }
};

struct F16Params {
  using Bits = unsigned short;
  static __device__ __forceinline__ unsigned short cap() { return 0x7bff; }  // 65504
  static __device__ __forceinline__ float value(unsigned short h) {
    return __half2float(__ushort_as_half(h));
  }
  static __device__ __forceinline__ unsigned short nearest(float v) {
    return __half_as_ushort(__float2half_rn(v));
  }
  static __device__ __forceinline__ unsigned short down(unsigned short h) {
    if ((h & 0x7fffu) == 0) return 0x8001;
    return static_cast<unsigned short>((h & 0x8000u) != 0 ? h + 1 : h - 1);
  }
  static __device__ __forceinline__ unsigned short up(unsigned short h) {
    return static_cast<unsigned short>(h + 1);
  }
  static __device__ __forceinline__ unsigned short floor(float v) {
    unsigned short h = nearest(v);
    if (value(h) > v) h = down(h);
    return h;
  }
  static __device__ __forceinline__ unsigned raw(unsigned short h) { return h; }
};

template <class P>
__device__ typename P::Bits largest_scale(float mx, float m) {
  const double range = __dsub_rn(static_cast<double>(mx), static_cast<double>(m));
  typename P::Bits s = P::cap();
  if (range > 0.0) {
    const double estimate = __ddiv_rn(15.0, range);
    if (estimate < static_cast<double>(P::value(P::cap())))
      s = P::nearest(__double2float_rn(estimate));
  }
  while (!scale_covers(P::value(s), mx, m)) s = P::down(s);
  while (s != P::cap() && scale_covers(P::value(P::up(s)), mx, m)) s = P::up(s);
  return s;
}

// q = round_half_to_even(clamp((x - m) * s, 0, 15)) in float64.
__device__ __forceinline__ unsigned code_of(float x, double m, double s) {
  double t = __dmul_rn(__dsub_rn(static_cast<double>(x), m), s);
  t = fmin(fmax(t, 0.0), 15.0);
  return static_cast<unsigned>(rint(t));
}

template <class P>
__global__ void quantize_rows_kernel(const __half* __restrict__ x, std::int64_t rows, int head_dim,
                                     int group, int groups_per_row, std::int64_t row_bytes,
                                     std::int64_t mins_offset, std::int64_t scales_offset,
                                     std::uint8_t* __restrict__ out) {
  constexpr int kParamBytes = sizeof(typename P::Bits);
  const int lane = threadIdx.x % detail::kWarpSize;
  const std::int64_t task = static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / detail::kWarpSize) +
                            threadIdx.x / detail::kWarpSize;
  if (task >= rows * groups_per_row) return;  // uniform over the warp
  const std::int64_t r = task / groups_per_row;
  const int g = static_cast<int>(task - r * groups_per_row);
  const __half* xr = x + r * head_dim;
  std::uint8_t* blob = out + r * row_bytes;
  const int e_begin = g * group;
  const int e_end = min(e_begin + group, head_dim);

  // Min (value, then lowest index among equal values: the host's sequential std::min keeps the
  // first) and max of the group.
  float mn = INFINITY;
  int mn_index = INT_MAX;
  float mx = -INFINITY;
  for (int e = e_begin + lane; e < e_end; e += detail::kWarpSize) {
    const float v = __half2float(xr[e]);
    if (v < mn) {
      mn = v;
      mn_index = e;
    }
    mx = mx < v ? v : mx;
  }
#pragma unroll
  for (int offset = detail::kWarpSize / 2; offset > 0; offset /= 2) {
    const float other_mn = __shfl_xor_sync(detail::kFullMask, mn, offset);
    const int other_index = __shfl_xor_sync(detail::kFullMask, mn_index, offset);
    const float other_mx = __shfl_xor_sync(detail::kFullMask, mx, offset);
    if (other_mn < mn || (other_mn == mn && other_index < mn_index)) {
      mn = other_mn;
      mn_index = other_index;
    }
    mx = fmaxf(mx, other_mx);
  }

  const typename P::Bits m_bits = P::floor(mn);
  const typename P::Bits s_bits = largest_scale<P>(mx, P::value(m_bits));
  const double md = static_cast<double>(P::value(m_bits));
  const double sd = static_cast<double>(P::value(s_bits));

  for (int pair = lane; pair < group / 2; pair += detail::kWarpSize) {
    const int e0 = e_begin + 2 * pair;
    const unsigned c0 = e0 < e_end ? code_of(__half2float(xr[e0]), md, sd) : 0u;
    const unsigned c1 = e0 + 1 < e_end ? code_of(__half2float(xr[e0 + 1]), md, sd) : 0u;
    blob[e_begin / 2 + pair] = static_cast<std::uint8_t>(c0 | (c1 << 4));
  }
  if (lane == 0) {
    const unsigned mr = P::raw(m_bits);
    const unsigned sr = P::raw(s_bits);
#pragma unroll
    for (int b = 0; b < kParamBytes; ++b) {
      blob[mins_offset + g * kParamBytes + b] = static_cast<std::uint8_t>(mr >> (8 * b));
      blob[scales_offset + g * kParamBytes + b] = static_cast<std::uint8_t>(sr >> (8 * b));
    }
  }
}

QuantLayout row_layout(std::int64_t head_dim, const QuantSpec& spec, const char* op) {
  const QuantLayout layout = quant_layout(Shape{1, head_dim}, spec);
  FLEXGEN_REQUIRE(spec.axis == -1 || spec.axis == 1, op, ": cache rows are grouped along their last axis, not axis ",
                  spec.axis);
  FLEXGEN_REQUIRE(spec.group_size % 2 == 0, op, ": the CUDA kernels need an even group_size, got ",
                  spec.group_size);
  FLEXGEN_REQUIRE(head_dim <= INT_MAX / 2, op, ": head_dim ", head_dim, " is too large");
  return layout;
}

}  // namespace

void dequantize(const std::byte* in, const Shape& shape, const QuantSpec& spec, __half* out,
                cudaStream_t stream) {
  dequantize_any(in, shape, spec, out, stream);
}

void dequantize(const std::byte* in, const Shape& shape, const QuantSpec& spec, float* out,
                cudaStream_t stream) {
  dequantize_any(in, shape, spec, out, stream);
}

void dequantize_rows(const std::byte* in, std::int64_t rows, std::int64_t head_dim,
                     const QuantSpec& spec, __half* out, cudaStream_t stream) {
  const QuantLayout layout = row_layout(head_dim, spec, "dequantize_rows");
  if (rows == 0 || head_dim == 0) return;
  const dim3 block(64, 4);
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((rows + 3) / 4, std::int64_t{1} << 20));
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(in);
  const int hd = static_cast<int>(head_dim);
  if (spec.scale_type == ScaleType::kFloat16) {
    dequantize_rows_kernel<true><<<blocks, block, 0, stream>>>(bytes, rows, hd, spec.group_size,
                                                               layout.total_bytes, layout.mins_offset,
                                                               layout.scales_offset, out);
  } else {
    dequantize_rows_kernel<false><<<blocks, block, 0, stream>>>(bytes, rows, hd, spec.group_size,
                                                                layout.total_bytes, layout.mins_offset,
                                                                layout.scales_offset, out);
  }
  FLEXGEN_CUDA_CHECK_LAUNCH("dequantize_rows_kernel",
                            str_cat("rows=", rows, " head_dim=", head_dim, " group=", spec.group_size,
                                    " ", scale_type_name(spec.scale_type), " params"));
}

void quantize_rows(const __half* x, std::int64_t rows, std::int64_t head_dim, const QuantSpec& spec,
                   std::byte* out, cudaStream_t stream) {
  const QuantLayout layout = row_layout(head_dim, spec, "quantize_rows");
  if (rows == 0 || head_dim == 0) return;
  constexpr int kWarpsPerBlock = 4;
  const std::int64_t tasks = rows * layout.groups_per_line;
  const auto blocks = static_cast<unsigned>((tasks + kWarpsPerBlock - 1) / kWarpsPerBlock);
  auto* bytes = reinterpret_cast<std::uint8_t*>(out);
  const int hd = static_cast<int>(head_dim);
  const int gpr = static_cast<int>(layout.groups_per_line);
  const int threads = kWarpsPerBlock * detail::kWarpSize;
  if (spec.scale_type == ScaleType::kFloat16) {
    quantize_rows_kernel<F16Params><<<blocks, threads, 0, stream>>>(
        x, rows, hd, spec.group_size, gpr, layout.total_bytes, layout.mins_offset,
        layout.scales_offset, bytes);
  } else {
    quantize_rows_kernel<F32Params><<<blocks, threads, 0, stream>>>(
        x, rows, hd, spec.group_size, gpr, layout.total_bytes, layout.mins_offset,
        layout.scales_offset, bytes);
  }
  FLEXGEN_CUDA_CHECK_LAUNCH("quantize_rows_kernel",
                            str_cat("rows=", rows, " head_dim=", head_dim, " group=", spec.group_size,
                                    " ", scale_type_name(spec.scale_type), " params"));
}

}  // namespace flexgen::cuda
