// The GPU half of `flexgen profile` (see profile_gpu.h and docs/profiling.md).
#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "engine/core/error.h"
#include "engine/core/format.h"
#include "engine/compress/quant4.h"
#include "engine/cuda/cublas_handle.cuh"
#include "engine/cuda/cuda_check.cuh"
#include "engine/cuda/ops/decode_attention.cuh"
#include "engine/cuda/ops/quant4.cuh"
#include "engine/cuda/profile_gpu.h"

namespace flexgen {
namespace {

using Clock = std::chrono::steady_clock;

// ---- RAII handles (destructors ignore errors: they may run while an error propagates) -------

class DeviceBuffer {
 public:
  explicit DeviceBuffer(Bytes bytes) {
    FLEXGEN_CUDA_CHECK(cudaMalloc(&ptr_, static_cast<std::size_t>(bytes)));
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) static_cast<void>(cudaFree(ptr_));
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
};

class PinnedBuffer {
 public:
  explicit PinnedBuffer(Bytes bytes) {
    FLEXGEN_CUDA_CHECK(cudaMallocHost(&ptr_, static_cast<std::size_t>(bytes)));
  }
  ~PinnedBuffer() {
    if (ptr_ != nullptr) static_cast<void>(cudaFreeHost(ptr_));
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  char* get() const { return static_cast<char*>(ptr_); }

 private:
  void* ptr_ = nullptr;
};

class Stream {
 public:
  Stream() { FLEXGEN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  ~Stream() {
    if (stream_ != nullptr) static_cast<void>(cudaStreamDestroy(stream_));
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

class Event {
 public:
  Event() { FLEXGEN_CUDA_CHECK(cudaEventCreate(&event_)); }
  ~Event() {
    if (event_ != nullptr) static_cast<void>(cudaEventDestroy(event_));
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

class Cublas {
 public:
  explicit Cublas(cudaStream_t stream) {
    FLEXGEN_CUBLAS_CHECK(cublasCreate(&handle_));
    FLEXGEN_CUBLAS_CHECK(cublasSetStream(handle_, stream));
  }
  ~Cublas() {
    if (handle_ != nullptr) static_cast<void>(cublasDestroy(handle_));
  }
  Cublas(const Cublas&) = delete;
  Cublas& operator=(const Cublas&) = delete;
  cublasHandle_t get() const { return handle_; }

 private:
  cublasHandle_t handle_ = nullptr;
};

// ---- kernels --------------------------------------------------------------------------------

__host__ __device__ inline std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// values[i] uniform in [-scale, scale), a function of (seed, i).
__global__ void fill_uniform_half_kernel(__half* values, std::int64_t n, std::uint64_t seed,
                                         float scale) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const std::uint64_t bits = splitmix64(seed ^ (static_cast<std::uint64_t>(i) * 0xD1B54A32D192ED03ull));
    const float u = static_cast<float>(bits >> 40) * (1.0f / 16777216.0f);
    values[i] = __float2half((2.0f * u - 1.0f) * scale);
  }
}

__global__ void fill_words_kernel(std::uint64_t* words, std::int64_t n, std::uint64_t seed) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    words[i] = splitmix64(seed ^ (static_cast<std::uint64_t>(i) * 0xD1B54A32D192ED03ull));
  }
}

// dst[i] = src[i] for n 16-byte elements, four loads in flight per thread.
__global__ void copy_kernel(const int4* __restrict__ src, int4* __restrict__ dst, std::int64_t n) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + 3 * stride < n; i += 4 * stride) {
    const int4 a = src[i];
    const int4 b = src[i + stride];
    const int4 c = src[i + 2 * stride];
    const int4 d = src[i + 3 * stride];
    dst[i] = a;
    dst[i + stride] = b;
    dst[i + 2 * stride] = c;
    dst[i + 3 * stride] = d;
  }
  for (; i < n; i += stride) dst[i] = src[i];
}

__device__ inline float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

__device__ inline float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Block-wide reductions; blockDim.x is a multiple of 32 (at most 1024). Every thread gets the
// result. `scratch` holds 32 floats.
__device__ inline float block_max(float v, float* scratch) {
  v = warp_max(v);
  const unsigned lane = threadIdx.x & 31u;
  const unsigned warp = threadIdx.x >> 5;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < (blockDim.x >> 5) ? scratch[lane] : -INFINITY;
  v = warp_max(v);
  __syncthreads();  // scratch is reused by the next reduction
  return v;
}

__device__ inline float block_sum(float v, float* scratch) {
  v = warp_sum(v);
  const unsigned lane = threadIdx.x & 31u;
  const unsigned warp = threadIdx.x >> 5;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < (blockDim.x >> 5) ? scratch[lane] : 0.0f;
  v = warp_sum(v);
  __syncthreads();
  return v;
}

// In-place softmax of each row of `cols` fp16 scores; one block per row. Rows come in groups of
// `queries` (one unit's queries); with `causal`, query q of a unit over `cols` positions sees
// positions 0 .. q + cols - queries and the rest of its row becomes 0.
__global__ void softmax_rows_kernel(__half* scores, std::int64_t cols, std::int64_t queries,
                                    bool causal) {
  __shared__ float scratch[32];
  const std::int64_t row = blockIdx.x;
  __half* r = scores + row * cols;
  const std::int64_t q = row % queries;
  const std::int64_t causal_limit = q + 1 + (cols - queries);
  const std::int64_t limit = causal && causal_limit < cols ? causal_limit : cols;
  float top = -INFINITY;
  for (std::int64_t c = threadIdx.x; c < limit; c += blockDim.x) top = fmaxf(top, __half2float(r[c]));
  top = block_max(top, scratch);
  float sum = 0.0f;
  for (std::int64_t c = threadIdx.x; c < limit; c += blockDim.x) sum += __expf(__half2float(r[c]) - top);
  sum = block_sum(sum, scratch);
  const float inv = 1.0f / sum;
  for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    r[c] = c < limit ? __float2half(__expf(__half2float(r[c]) - top) * inv) : __float2half(0.0f);
  }
}

// ---- launchers ------------------------------------------------------------------------------

constexpr int kThreads = 256;

unsigned grid_for(std::int64_t n, std::int64_t cap) {
  return static_cast<unsigned>(std::max<std::int64_t>(1, std::min<std::int64_t>((n + kThreads - 1) / kThreads, cap)));
}

void fill_uniform_half(__half* values, std::int64_t n, std::uint64_t seed, float scale,
                       cudaStream_t stream) {
  fill_uniform_half_kernel<<<grid_for(n, 8192), kThreads, 0, stream>>>(values, n, seed, scale);
  FLEXGEN_CUDA_CHECK_LAUNCH("fill_uniform_half_kernel", str_cat(n, " values"));
}

void fill_words(void* words, Bytes bytes, std::uint64_t seed, cudaStream_t stream) {
  const std::int64_t n = bytes / 8;
  fill_words_kernel<<<grid_for(n, 8192), kThreads, 0, stream>>>(static_cast<std::uint64_t*>(words), n, seed);
  FLEXGEN_CUDA_CHECK_LAUNCH("fill_words_kernel", str_cat(n, " words"));
}

void launch_copy(const void* src, void* dst, Bytes bytes, int multiprocessors, cudaStream_t stream) {
  const std::int64_t n = bytes / 16;
  copy_kernel<<<grid_for(n, static_cast<std::int64_t>(multiprocessors) * 16), kThreads, 0, stream>>>(
      static_cast<const int4*>(src), static_cast<int4*>(dst), n);
  FLEXGEN_CUDA_CHECK_LAUNCH("copy_kernel", str_cat(n, " x 16 bytes"));
}

void launch_softmax(__half* scores, std::int64_t rows, std::int64_t cols, std::int64_t queries,
                    bool causal, cudaStream_t stream) {
  softmax_rows_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(scores, cols, queries, causal);
  FLEXGEN_CUDA_CHECK_LAUNCH("softmax_rows_kernel", str_cat(rows, " rows x ", cols));
}

// Host buffers are filled with a pattern (which also touches every page before timing).
void fill_host(char* p, Bytes bytes) {
  for (Bytes i = 0; i + 8 <= bytes; i += 8) {
    const std::uint64_t word = splitmix64(static_cast<std::uint64_t>(i));
    std::memcpy(p + i, &word, 8);
  }
}

// ---- timing ---------------------------------------------------------------------------------

// `warmup` untimed calls of launch(), then `repeats` samples, each the CUDA event time of `inner`
// back-to-back calls on `stream` divided by `inner`, in seconds.
template <typename Launch>
std::vector<double> time_on_stream(cudaStream_t stream, int warmup, int repeats, int inner,
                                   Launch&& launch) {
  Event start, stop;
  for (int i = 0; i < warmup; ++i) launch();
  FLEXGEN_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<double> seconds;
  for (int r = 0; r < repeats; ++r) {
    FLEXGEN_CUDA_CHECK(cudaEventRecord(start.get(), stream));
    for (int i = 0; i < inner; ++i) launch();
    FLEXGEN_CUDA_CHECK(cudaEventRecord(stop.get(), stream));
    FLEXGEN_CUDA_CHECK(cudaEventSynchronize(stop.get()));
    float ms = 0;
    FLEXGEN_CUDA_CHECK(cudaEventElapsedTime(&ms, start.get(), stop.get()));
    seconds.push_back(std::max(static_cast<double>(ms), 1e-6) * 1e-3 / inner);
  }
  return seconds;
}

// Like time_on_stream, with the host clock around each (synchronous) call.
template <typename Call>
std::vector<double> time_on_host(int warmup, int repeats, Call&& call) {
  for (int i = 0; i < warmup; ++i) call();
  std::vector<double> seconds;
  for (int r = 0; r < repeats; ++r) {
    const auto start = Clock::now();
    call();
    seconds.push_back(std::max(std::chrono::duration<double>(Clock::now() - start).count(), 1e-9));
  }
  return seconds;
}

std::vector<double> rates(double work, const std::vector<double>& seconds) {
  std::vector<double> out;
  for (double s : seconds) out.push_back(work / s);
  return out;
}

int visible_devices() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    static_cast<void>(cudaGetLastError());  // no driver or no device: clear the sticky error
    return 0;
  }
  return count;
}

void use_device(int device) {
  const int count = visible_devices();
  FLEXGEN_REQUIRE(count > 0, "no GPU: the GPU parts of the profile need the CUDA backend and a device "
                  "(none is visible)");
  FLEXGEN_REQUIRE(device >= 0 && device < count, "profile: GPU ", device, " is not visible (",
                  count, " GPUs)");
  FLEXGEN_CUDA_CHECK(cudaSetDevice(device));
}

void report(const ProfileProgress& progress, const std::string& line) {
  if (progress) progress(line);
}

// ---- transfers ------------------------------------------------------------------------------

// Runs copy(index) on two host threads at once (after both are ready), each timing its own call.
template <typename Copy>
std::pair<double, double> run_pair(int device, Copy&& copy) {
  std::atomic<int> ready{0};
  double seconds[2] = {0, 0};
  std::exception_ptr errors[2];
  auto worker = [&](int index) {
    try {
      FLEXGEN_CUDA_CHECK(cudaSetDevice(device));
      ready.fetch_add(1);
      while (ready.load() < 2) std::this_thread::yield();
      const auto start = Clock::now();
      copy(index);
      seconds[index] = std::max(std::chrono::duration<double>(Clock::now() - start).count(), 1e-9);
    } catch (...) {
      errors[index] = std::current_exception();
      ready.fetch_add(2);  // never leave the other thread waiting
    }
  };
  std::thread first(worker, 0);
  std::thread second(worker, 1);
  first.join();
  second.join();
  for (const std::exception_ptr& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  return {seconds[0], seconds[1]};
}

GemmMeasurement measure_gemm(const Cublas& blas, cudaStream_t stream, Phase phase, std::int64_t m,
                             std::int64_t n, std::int64_t k, const DeviceBuffer& x,
                             const DeviceBuffer& w, const DeviceBuffer& y, int repeats) {
  GemmMeasurement g;
  g.phase = phase;
  g.m = m;
  g.n = n;
  g.k = k;
  const float alpha = 1.0f, beta = 0.0f;
  const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  // Enough calls per sample for about a millisecond of work at a few hundred TFLOP/s.
  const int inner = static_cast<int>(std::clamp(std::ceil(2e11 / flops), 1.0, 50.0));
  // Y[m, n] = X[m, k] W[n, k]^T; column-major: Y^T (n x m) = W^T (op T of a k x n) * X^T (k x m).
  auto gemm = [&] {
    FLEXGEN_CUBLAS_CHECK(cublasGemmEx(blas.get(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n),
                                      static_cast<int>(m), static_cast<int>(k), &alpha, w.get(),
                                      CUDA_R_16F, static_cast<int>(k), x.get(), CUDA_R_16F,
                                      static_cast<int>(k), &beta, y.get(), CUDA_R_16F,
                                      static_cast<int>(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  };
  g.flops_per_s = rates(flops, time_on_stream(stream, 3, repeats, inner, gemm));
  return g;
}

GpuAttentionMeasurement measure_attention(const Cublas& blas, cudaStream_t stream, Phase phase,
                                          std::int64_t units, std::int64_t queries,
                                          std::int64_t positions, std::int64_t head_dim, int repeats) {
  GpuAttentionMeasurement a;
  a.phase = phase;
  a.units = units;
  a.queries = queries;
  a.positions = positions;
  a.head_dim = head_dim;
  const bool causal = phase == Phase::kPrefill;
  DeviceBuffer q(units * queries * head_dim * 2);
  DeviceBuffer keys(units * positions * head_dim * 2);
  DeviceBuffer values(units * positions * head_dim * 2);
  DeviceBuffer scores(units * queries * positions * 2);
  DeviceBuffer out(units * queries * head_dim * 2);
  const float q_scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  fill_uniform_half(q.as<__half>(), units * queries * head_dim, 11, q_scale, stream);
  fill_uniform_half(keys.as<__half>(), units * positions * head_dim, 12, 1.0f, stream);
  fill_uniform_half(values.as<__half>(), units * positions * head_dim, 13, 1.0f, stream);

  const float alpha = 1.0f, beta = 0.0f;
  const int hd = static_cast<int>(head_dim);
  const int nq = static_cast<int>(queries);
  const int np = static_cast<int>(positions);
  const int batch = static_cast<int>(units);
  auto attention = [&] {
    // scores[u][q][p] = sum_d K[u][p][d] Q[u][q][d]; column-major: S^T (p x q) = K^T * Q.
    FLEXGEN_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        blas.get(), CUBLAS_OP_T, CUBLAS_OP_N, np, nq, hd, &alpha, keys.get(), CUDA_R_16F, hd,
        positions * head_dim, q.get(), CUDA_R_16F, hd, queries * head_dim, &beta, scores.get(),
        CUDA_R_16F, np, queries * positions, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    launch_softmax(scores.as<__half>(), units * queries, positions, queries, causal, stream);
    // out[u][q][d] = sum_p P[u][q][p] V[u][p][d]; column-major: O^T (d x q) = V^T (d x p) * P^T.
    FLEXGEN_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        blas.get(), CUBLAS_OP_N, CUBLAS_OP_N, hd, nq, np, &alpha, values.get(), CUDA_R_16F, hd,
        positions * head_dim, scores.get(), CUDA_R_16F, np, queries * positions, &beta, out.get(),
        CUDA_R_16F, hd, queries * head_dim, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  };
  const std::vector<double> seconds = time_on_stream(stream, 3, repeats, 3, attention);
  const double u = static_cast<double>(units), s = static_cast<double>(positions),
               d = static_cast<double>(head_dim), nqd = static_cast<double>(queries);
  const double schedule_flops = causal ? u * 2.0 * d * s * (s + 1.0) : u * 4.0 * s * d;
  a.flops_per_s = rates(schedule_flops, seconds);
  a.gemm_flops_per_s = rates(4.0 * u * nqd * s * d, seconds);

  // The outputs are convex combinations of values in [-1, 1): a NaN or a value outside says the
  // proxy computed garbage.
  std::vector<__half> sample(static_cast<std::size_t>(std::min<std::int64_t>(units * queries * head_dim, 4096)));
  FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(sample.data(), out.get(), sample.size() * sizeof(__half),
                                     cudaMemcpyDeviceToHost, stream));
  FLEXGEN_CUDA_CHECK(cudaStreamSynchronize(stream));
  for (const __half& h : sample) {
    const float v = __half2float(h);
    FLEXGEN_REQUIRE(std::isfinite(v) && std::fabs(v) <= 1.01f, "profile: the GPU attention proxy (",
                    phase_name(phase), ", ", positions, " positions) produced ", v,
                    ", outside the values' range");
  }
  return a;
}

// Decode attention with the engine's own kernel (cuda::decode_attention, as the runtime launches
// it for GPU-homed units): `units` units of one query over `positions` cached positions (the last
// one the new token), the cache position-major [positions, units, head_dim] as a GPU home part.
GpuAttentionMeasurement measure_decode_attention(cudaStream_t stream, std::int64_t sequences, int heads,
                                                 std::int64_t positions, int head_dim, int repeats) {
  GpuAttentionMeasurement a;
  a.phase = Phase::kDecode;
  a.units = sequences * heads;
  a.queries = 1;
  a.positions = positions;
  a.head_dim = head_dim;
  const std::int64_t units = a.units;
  DeviceBuffer q(units * head_dim * 2), out(units * head_dim * 2);
  DeviceBuffer keys(positions * units * head_dim * 2), values(positions * units * head_dim * 2);
  DeviceBuffer pad(sequences * 4);
  FLEXGEN_CUDA_CHECK(cudaMemsetAsync(pad.get(), 0, static_cast<std::size_t>(sequences * 4), stream));
  fill_uniform_half(q.as<__half>(), units * head_dim, 51, 1.0f / std::sqrt(static_cast<float>(head_dim)), stream);
  fill_uniform_half(keys.as<__half>(), positions * units * head_dim, 52, 1.0f, stream);
  fill_uniform_half(values.as<__half>(), positions * units * head_dim, 53, 1.0f, stream);
  const std::size_t ws_bytes = cuda::decode_attention_workspace_bytes(units, head_dim, 64);
  DeviceBuffer ws(static_cast<Bytes>(ws_bytes));
  cuda::KvView view;
  view.num_parts = 1;
  view.parts[0].keys = keys.as<__half>();
  view.parts[0].values = values.as<__half>();
  view.parts[0].unit_begin = 0;
  view.parts[0].unit_end = units;
  view.parts[0].position_stride = units * head_dim;
  auto attention = [&] {
    cuda::decode_attention(q.as<__half>(), view, pad.as<std::int32_t>(), sequences, heads, head_dim, positions - 1,
                           out.as<__half>(), ws.as<float>(), ws_bytes, 0, stream);
  };
  const std::vector<double> seconds = time_on_stream(stream, 3, repeats, 3, attention);
  const double flops = static_cast<double>(units) * 4.0 * static_cast<double>(positions) * head_dim;
  a.flops_per_s = rates(flops, seconds);
  a.gemm_flops_per_s = a.flops_per_s;
  std::vector<__half> sample(static_cast<std::size_t>(std::min<std::int64_t>(units * head_dim, 4096)));
  FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(sample.data(), out.get(), sample.size() * sizeof(__half), cudaMemcpyDeviceToHost,
                                     stream));
  FLEXGEN_CUDA_CHECK(cudaStreamSynchronize(stream));
  for (const __half& h : sample) {
    const float v = __half2float(h);
    FLEXGEN_REQUIRE(std::isfinite(v) && std::fabs(v) <= 1.01f, "profile: decode attention at ", positions,
                    " positions produced ", v, ", outside the values' range");
  }
  return a;
}

// 4-bit dequantization with the engine's kernels, on valid random codes: a weight [n, k] grouped
// along axis 0 (cuda::dequantize, what the runtime runs on a layer's 4-bit weights) or `rows`
// KV-cache rows of head_dim (cuda::dequantize_rows). Rate: dense fp16 bytes written per second.
DequantMeasurement measure_dequant(cudaStream_t stream, bool cache_rows, std::int64_t a, std::int64_t b,
                                   int repeats) {
  const QuantSpec spec = cache_rows ? cache_quant_spec(ScaleType::kFloat16) : weight_quant_spec(ScaleType::kFloat16);
  DequantMeasurement m;
  m.what = cache_rows ? str_cat("cache rows ", a, " x ", b) : str_cat("weight ", a, " x ", b);
  const std::int64_t elements = a * b;
  m.dense_bytes = elements * 2;
  DeviceBuffer dense(elements * 2);
  std::unique_ptr<DeviceBuffer> packed;
  if (cache_rows) {
    // Real rows: quantize random fp16 values with the engine's own quantize_rows.
    const Bytes row_bytes = quantized_bytes(Shape{1, b}, spec);
    packed = std::make_unique<DeviceBuffer>(a * row_bytes);
    fill_uniform_half(dense.as<__half>(), elements, 61, 1.0f, stream);
    cuda::quantize_rows(dense.as<__half>(), a, b, spec, packed->as<std::byte>(), stream);
  } else {
    // Random codes with every group's minimum -1 and scale 7.5 (values in [-1, 1]).
    const QuantLayout layout = quant_layout(Shape{a, b}, spec);
    packed = std::make_unique<DeviceBuffer>(layout.total_bytes);
    fill_words(packed->get(), layout.code_bytes / 8 * 8, 62, stream);
    std::vector<__half> params(static_cast<std::size_t>(layout.num_groups));
    std::fill(params.begin(), params.end(), __float2half(-1.0f));
    FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(packed->as<std::byte>() + layout.mins_offset, params.data(),
                                       params.size() * 2, cudaMemcpyHostToDevice, stream));
    FLEXGEN_CUDA_CHECK(cudaStreamSynchronize(stream));
    std::fill(params.begin(), params.end(), __float2half(7.5f));
    FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(packed->as<std::byte>() + layout.scales_offset, params.data(),
                                       params.size() * 2, cudaMemcpyHostToDevice, stream));
    FLEXGEN_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  FLEXGEN_CUDA_CHECK(cudaMemsetAsync(dense.get(), 0xff, static_cast<std::size_t>(elements * 2), stream));  // NaNs
  auto run = [&] {
    if (cache_rows) {
      cuda::dequantize_rows(packed->as<std::byte>(), a, b, spec, dense.as<__half>(), stream);
    } else {
      cuda::dequantize(packed->as<std::byte>(), Shape{a, b}, spec, dense.as<__half>(), stream);
    }
  };
  m.bytes_per_s = rates(static_cast<double>(m.dense_bytes), time_on_stream(stream, 3, repeats, 3, run));
  for (const std::int64_t offset : {std::int64_t{0}, std::max<std::int64_t>(0, elements - 4096)}) {
    std::vector<__half> sample(static_cast<std::size_t>(std::min<std::int64_t>(elements, 4096)));
    FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(sample.data(), dense.as<__half>() + offset, sample.size() * 2,
                                       cudaMemcpyDeviceToHost, stream));
    FLEXGEN_CUDA_CHECK(cudaStreamSynchronize(stream));
    for (const __half& h : sample) {
      const float v = __half2float(h);
      FLEXGEN_REQUIRE(std::isfinite(v) && std::fabs(v) <= 1.01f, "profile: 4-bit dequantization (", m.what,
                      ") produced ", v, ", outside the values' range");
    }
  }
  return m;
}

}  // namespace

bool gpu_profiling_available() { return visible_devices() > 0; }

TransferMeasurement measure_gpu_transfers(int device, Bytes bytes, int repeats) {
  use_device(device);
  FLEXGEN_REQUIRE(bytes > 0 && repeats >= 1, "profile: transfers need a positive size and repeat count");
  TransferMeasurement t;
  t.transfer_bytes = bytes;
  t.repeats = repeats;
  const auto n = static_cast<std::size_t>(bytes);
  const double work = static_cast<double>(bytes);
  PinnedBuffer pinned_up(bytes), pinned_down(bytes);
  std::unique_ptr<char[]> pageable_up(new char[n]), pageable_down(new char[n]);
  DeviceBuffer device_up(bytes), device_down(bytes);
  fill_host(pinned_up.get(), bytes);
  fill_host(pinned_down.get(), bytes);
  fill_host(pageable_up.get(), bytes);
  fill_host(pageable_down.get(), bytes);
  Stream s1, s2;
  fill_words(device_down.get(), bytes, 21, s1.get());
  fill_words(device_up.get(), bytes, 22, s1.get());
  FLEXGEN_CUDA_CHECK(cudaStreamSynchronize(s1.get()));
  constexpr int kWarmup = 2;

  // One direction, pinned: CUDA events.
  t.h2d_pinned_bytes_per_s = rates(work, time_on_stream(s1.get(), kWarmup, repeats, 1, [&] {
    FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(device_up.get(), pinned_up.get(), n, cudaMemcpyHostToDevice, s1.get()));
  }));
  t.d2h_pinned_bytes_per_s = rates(work, time_on_stream(s1.get(), kWarmup, repeats, 1, [&] {
    FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(pinned_down.get(), device_down.get(), n, cudaMemcpyDeviceToHost, s1.get()));
  }));

  // One direction, pageable: the host clock (the driver stages through its own pinned buffers).
  t.h2d_pageable_bytes_per_s = rates(work, time_on_host(kWarmup, repeats, [&] {
    FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(device_up.get(), pageable_up.get(), n, cudaMemcpyHostToDevice, s1.get()));
    FLEXGEN_CUDA_CHECK(cudaStreamSynchronize(s1.get()));
  }));
  t.d2h_pageable_bytes_per_s = rates(work, time_on_host(kWarmup, repeats, [&] {
    FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(pageable_down.get(), device_down.get(), n, cudaMemcpyDeviceToHost, s1.get()));
    FLEXGEN_CUDA_CHECK(cudaStreamSynchronize(s1.get()));
  }));

  // Both directions at once, pinned: two streams released by one event; each direction's time
  // runs from that event to its own end.
  {
    Event start, up_done, down_done;
    for (int r = 0; r < kWarmup + repeats; ++r) {
      FLEXGEN_CUDA_CHECK(cudaEventRecord(start.get(), s1.get()));
      FLEXGEN_CUDA_CHECK(cudaStreamWaitEvent(s2.get(), start.get(), 0));
      FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(device_up.get(), pinned_up.get(), n, cudaMemcpyHostToDevice, s1.get()));
      FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(pinned_down.get(), device_down.get(), n, cudaMemcpyDeviceToHost, s2.get()));
      FLEXGEN_CUDA_CHECK(cudaEventRecord(up_done.get(), s1.get()));
      FLEXGEN_CUDA_CHECK(cudaEventRecord(down_done.get(), s2.get()));
      FLEXGEN_CUDA_CHECK(cudaEventSynchronize(up_done.get()));
      FLEXGEN_CUDA_CHECK(cudaEventSynchronize(down_done.get()));
      if (r < kWarmup) continue;
      float up_ms = 0, down_ms = 0;
      FLEXGEN_CUDA_CHECK(cudaEventElapsedTime(&up_ms, start.get(), up_done.get()));
      FLEXGEN_CUDA_CHECK(cudaEventElapsedTime(&down_ms, start.get(), down_done.get()));
      t.duplex_h2d_pinned_bytes_per_s.push_back(work / (std::max(static_cast<double>(up_ms), 1e-6) * 1e-3));
      t.duplex_d2h_pinned_bytes_per_s.push_back(work / (std::max(static_cast<double>(down_ms), 1e-6) * 1e-3));
    }
  }

  // Both directions at once, pageable: a pageable copy blocks its host thread, so each direction
  // gets its own thread and stream.
  for (int r = 0; r < kWarmup + repeats; ++r) {
    const auto [up_s, down_s] = run_pair(device, [&](int index) {
      if (index == 0) {
        FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(device_up.get(), pageable_up.get(), n, cudaMemcpyHostToDevice, s1.get()));
        FLEXGEN_CUDA_CHECK(cudaStreamSynchronize(s1.get()));
      } else {
        FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(pageable_down.get(), device_down.get(), n, cudaMemcpyDeviceToHost, s2.get()));
        FLEXGEN_CUDA_CHECK(cudaStreamSynchronize(s2.get()));
      }
    });
    if (r < kWarmup) continue;
    t.duplex_h2d_pageable_bytes_per_s.push_back(work / up_s);
    t.duplex_d2h_pageable_bytes_per_s.push_back(work / down_s);
  }

  // The copies must have moved the bytes: the device copy of the h2d source, read back, and the
  // d2h destination against the device source.
  std::vector<char> check(static_cast<std::size_t>(std::min<Bytes>(bytes, 1 << 20)));
  FLEXGEN_CUDA_CHECK(cudaMemcpy(check.data(), device_up.get(), check.size(), cudaMemcpyDeviceToHost));
  FLEXGEN_REQUIRE(std::memcmp(check.data(), pageable_up.get(), check.size()) == 0,
                  "profile: a host-to-device copy did not deliver its bytes");
  FLEXGEN_CUDA_CHECK(cudaMemcpy(check.data(), device_down.get(), check.size(), cudaMemcpyDeviceToHost));
  FLEXGEN_REQUIRE(std::memcmp(check.data(), pinned_down.get(), check.size()) == 0 &&
                      std::memcmp(check.data(), pageable_down.get(), check.size()) == 0,
                  "profile: a device-to-host copy did not deliver its bytes");
  return t;
}

PlainCopyLoopMeasurement measure_plain_h2d_loop(int device, Bytes bytes, int iterations) {
  use_device(device);
  FLEXGEN_REQUIRE(bytes > 0 && iterations >= 1, "profile: the copy loop needs a positive size and count");
  PlainCopyLoopMeasurement m;
  m.transfer_bytes = bytes;
  m.iterations = iterations;
  const auto n = static_cast<std::size_t>(bytes);
  PinnedBuffer host(bytes);
  DeviceBuffer dev(bytes);
  fill_host(host.get(), bytes);
  Stream stream;
  for (int i = 0; i < 2; ++i) {
    FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(dev.get(), host.get(), n, cudaMemcpyHostToDevice, stream.get()));
  }
  FLEXGEN_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
  const auto start = Clock::now();
  for (int i = 0; i < iterations; ++i) {
    FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(dev.get(), host.get(), n, cudaMemcpyHostToDevice, stream.get()));
  }
  FLEXGEN_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
  const double seconds = std::max(std::chrono::duration<double>(Clock::now() - start).count(), 1e-9);
  m.h2d_bytes_per_s = static_cast<double>(bytes) * iterations / seconds;
  return m;
}

GpuMeasurements profile_gpu(const GpuProfileOptions& options) {
  use_device(options.device);
  FLEXGEN_REQUIRE(options.repeats >= 1, "profile: at least one repeat is needed");
  GpuMeasurements g;
  g.device = options.device;
  cudaDeviceProp prop{};
  FLEXGEN_CUDA_CHECK(cudaGetDeviceProperties(&prop, options.device));
  g.device_name = prop.name;
  g.compute_capability_major = prop.major;
  g.compute_capability_minor = prop.minor;
  g.multiprocessors = prop.multiProcessorCount;
  FLEXGEN_CUDA_CHECK(cudaDriverGetVersion(&g.driver_version));
  FLEXGEN_CUDA_CHECK(cudaRuntimeGetVersion(&g.runtime_version));
  // What a run can allocate: the free memory once a context and a cuBLAS handle exist, as when the
  // CUDA runtime checks its plan (the context alone takes about 0.6 GiB of an H200).
  std::size_t free_bytes = 0, total_bytes = 0;
  {
    FLEXGEN_CUDA_CHECK(cudaSetDevice(options.device));
    cuda::CublasHandle handle;
    FLEXGEN_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  }
  g.memory_bytes = static_cast<Bytes>(total_bytes);
  g.free_memory_bytes = static_cast<Bytes>(free_bytes);

  report(options.progress, str_cat("GPU: ", g.device_name, ", ", format_bytes(g.memory_bytes)));
  report(options.progress, str_cat("transfers: ", format_bytes(options.transfer_bytes),
                                   " copies, pinned and pageable, one and both directions"));
  g.transfers = measure_gpu_transfers(options.device, options.transfer_bytes, options.transfer_repeats);
  report(options.progress, "transfers: the plain pinned cudaMemcpyAsync loop");
  g.plain_loop = measure_plain_h2d_loop(options.device, options.transfer_bytes, options.plain_loop_iterations);

  Stream stream;
  const cudaStream_t s = stream.get();
  Cublas blas(s);
  FLEXGEN_CUBLAS_CHECK(cublasGetVersion(blas.get(), &g.cublas_version));

  {
    report(options.progress, str_cat("GPU memory: device-to-device copies of ",
                                      format_bytes(options.memory_buffer_bytes)));
    const Bytes bytes = options.memory_buffer_bytes / 16 * 16;
    FLEXGEN_REQUIRE(bytes > 0, "profile: the GPU memory buffer must be at least 16 bytes");
    g.memory.buffer_bytes = bytes;
    DeviceBuffer src(bytes), dst(bytes);
    fill_words(src.get(), bytes, 31, s);
    const double work = 2.0 * static_cast<double>(bytes);
    g.memory.memcpy_bytes_per_s = rates(work, time_on_stream(s, 2, options.repeats, 1, [&] {
      FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), static_cast<std::size_t>(bytes),
                                         cudaMemcpyDeviceToDevice, s));
    }));
    FLEXGEN_CUDA_CHECK(cudaMemsetAsync(dst.get(), 0, static_cast<std::size_t>(bytes), s));
    g.memory.copy_kernel_bytes_per_s = rates(work, time_on_stream(s, 2, options.repeats, 1, [&] {
      launch_copy(src.get(), dst.get(), bytes, g.multiprocessors, s);
    }));
    // The kernel must have copied: compare the last 64 KiB (the grid-stride tail) and the first.
    const std::size_t probe = static_cast<std::size_t>(std::min<Bytes>(bytes, 64 * kKiB));
    std::vector<char> a(probe), b(probe);
    for (const std::size_t offset : {std::size_t{0}, static_cast<std::size_t>(bytes) - probe}) {
      FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(a.data(), src.as<char>() + offset, probe, cudaMemcpyDeviceToHost, s));
      FLEXGEN_CUDA_CHECK(cudaMemcpyAsync(b.data(), dst.as<char>() + offset, probe, cudaMemcpyDeviceToHost, s));
      FLEXGEN_CUDA_CHECK(cudaStreamSynchronize(s));
      FLEXGEN_REQUIRE(std::memcmp(a.data(), b.data(), probe) == 0, "profile: the GPU copy kernel did not copy");
    }
  }

  {
    // Prefill: m = 8192 tokens (e.g. 16 sequences x 512), the layer's GEMMs (h x h projections,
    // h -> 4h and 4h -> h MLP) at OPT-6.7B's and OPT-66B's hidden sizes. Decode: 32 .. 256 tokens
    // through OPT-66B's MLP (h = 7168).
    struct Shape {
      Phase phase;
      std::int64_t m, n, k;
    };
    std::vector<Shape> shapes;
    for (std::int64_t h : {4096, 7168}) {
      shapes.push_back({Phase::kPrefill, 8192, h, h});
      shapes.push_back({Phase::kPrefill, 8192, 4 * h, h});
      shapes.push_back({Phase::kPrefill, 8192, h, 4 * h});
    }
    for (std::int64_t m : {32, 64, 128, 256}) {
      shapes.push_back({Phase::kDecode, m, 4 * 7168, 7168});
      shapes.push_back({Phase::kDecode, m, 7168, 4 * 7168});
    }
    std::int64_t x_max = 0, w_max = 0, y_max = 0;
    for (const Shape& sh : shapes) {
      x_max = std::max(x_max, sh.m * sh.k);
      w_max = std::max(w_max, sh.n * sh.k);
      y_max = std::max(y_max, sh.m * sh.n);
    }
    report(options.progress, str_cat("GEMMs: cublasGemmEx fp16, ", shapes.size(), " shapes"));
    DeviceBuffer x(x_max * 2), w(w_max * 2), y(y_max * 2);
    fill_uniform_half(x.as<__half>(), x_max, 41, 1.0f, s);
    fill_uniform_half(w.as<__half>(), w_max, 42, 1.0f, s);
    // Bring the clocks up to their loaded state first (about 100 ms of the largest GEMM); the
    // result is discarded.
    measure_gemm(blas, s, Phase::kPrefill, 8192, 4 * 7168, 7168, x, w, y, 20);
    for (const Shape& sh : shapes) {
      g.gemms.push_back(measure_gemm(blas, s, sh.phase, sh.m, sh.n, sh.k, x, w, y, options.repeats));
    }
  }

  {
    // Prefill: 32 sequences x 32 heads over a 512-token prompt, batched cuBLAS (a proxy of the
    // engine's tensor-core prefill attention). Decode: the engine's own kernel, 64 sequences x
    // 32 heads, one query over 512 .. 2048 positions. head_dim 128 (OPT-6.7B and larger).
    report(options.progress, "GPU attention: prefill (batched cuBLAS) at 512 positions, decode (the engine's "
                             "kernel) at 512 .. 2048");
    g.attention.push_back(measure_attention(blas, s, Phase::kPrefill, 32 * 32, 512, 512, 128, options.repeats));
    for (std::int64_t positions : {512, 1024, 2048}) {
      g.attention.push_back(measure_decode_attention(s, 64, 32, positions, 128, options.repeats));
    }
  }
  {
    // 4-bit dequantization: OPT-30B's and OPT-66B's MLP weights, and a decode step's cache rows
    // (64 sequences x 32 heads x 512 positions).
    report(options.progress, "4-bit dequantization: weights and KV-cache rows (the engine's kernels)");
    g.dequant.push_back(measure_dequant(s, false, 4 * 7168, 7168, options.repeats));
    g.dequant.push_back(measure_dequant(s, false, 4 * 9216, 9216, options.repeats));
    g.dequant.push_back(measure_dequant(s, true, 64 * 32 * 512, 128, options.repeats));
  }
  FLEXGEN_CUDA_CHECK(cudaStreamSynchronize(s));
  return g;
}

}  // namespace flexgen
