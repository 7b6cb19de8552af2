#include "engine/cuda/ops/linear.cuh"

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <limits>
#include <map>
#include <tuple>

#include <cublasLt.h>

#include "engine/cuda/cuda_check.cuh"
#include "engine/cuda/ops/device_utils.cuh"

namespace flexgen::cuda {
namespace {

// Grid-stride over elements (kVector: over 8-element chunks; out % 8 == 0 so a chunk never
// crosses a row).
template <bool kVector>
__global__ void bias_act_residual_kernel(__half* __restrict__ y, std::int64_t total,
                                         std::int64_t out_features, const __half* __restrict__ bias,
                                         float scale, bool relu,
                                         const __half* __restrict__ residual) {
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if constexpr (kVector) {
    uint4* yv = reinterpret_cast<uint4*>(y);
    for (; i < total / 8; i += step) {
      float v[8];
      detail::half8_to_float(yv[i], v);
      if (bias != nullptr) {
        float b[8];
        detail::half8_to_float(reinterpret_cast<const uint4*>(bias)[(i * 8) % out_features / 8], b);
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] += b[j];
      }
      if (scale != 1.0f) {
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] *= scale;
      }
      if (relu) {
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = fmaxf(v[j], 0.0f);
      }
      if (residual != nullptr) {
        float r[8];
        detail::half8_to_float(reinterpret_cast<const uint4*>(residual)[i], r);
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] += r[j];
      }
      yv[i] = detail::float8_to_half(v);
    }
  } else {
    for (; i < total; i += step) {
      float v = __half2float(y[i]);
      if (bias != nullptr) v += __half2float(bias[i % out_features]);
      if (scale != 1.0f) v *= scale;
      if (relu) v = fmaxf(v, 0.0f);
      if (residual != nullptr) v += __half2float(residual[i]);
      y[i] = __float2half_rn(v);
    }
  }
}

}  // namespace

void bias_act_residual(__half* y, std::int64_t rows, std::int64_t out_features,
                       const __half* bias, const LinearEpilogue& epilogue, cudaStream_t stream) {
  const std::int64_t total = rows * out_features;
  if (total == 0 || (bias == nullptr && epilogue.scale == 1.0f && !epilogue.relu &&
                         epilogue.residual == nullptr)) return;
  const bool vector = out_features % 8 == 0 && detail::aligned_to(y, 16) &&
                      (bias == nullptr || detail::aligned_to(bias, 16)) &&
                      (epilogue.residual == nullptr || detail::aligned_to(epilogue.residual, 16));
  const std::int64_t items = vector ? total / 8 : total;
  constexpr int kThreads = 256;
  const auto blocks = static_cast<unsigned>(
      std::min<std::int64_t>((items + kThreads - 1) / kThreads, std::int64_t{1} << 20));
  if (vector) {
    bias_act_residual_kernel<true><<<blocks, kThreads, 0, stream>>>(
        y, total, out_features, bias, epilogue.scale, epilogue.relu, epilogue.residual);
  } else {
    bias_act_residual_kernel<false><<<blocks, kThreads, 0, stream>>>(
        y, total, out_features, bias, epilogue.scale, epilogue.relu, epilogue.residual);
  }
  FLEXGEN_CUDA_CHECK_LAUNCH("bias_act_residual_kernel",
                            str_cat("rows=", rows, " out=", out_features,
                                    bias != nullptr ? " bias" : "",
                                    epilogue.scale != 1.0f ? " scale" : "", epilogue.relu ? " relu" : "",
                                    epilogue.residual != nullptr ? " residual" : "",
                                    vector ? " 16-byte" : " 2-byte"));
}

void linear(cublasHandle_t handle, const __half* x, std::int64_t rows, std::int64_t in_features,
            const __half* weight, const __half* bias, std::int64_t out_features, __half* y,
            const LinearEpilogue& epilogue, cudaStream_t stream) {
  [[maybe_unused]] constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();
  assert(rows >= 0 && in_features >= 1 && out_features >= 0);
  assert(rows <= kIntMax && in_features <= kIntMax && out_features <= kIntMax);
  if (rows == 0 || out_features == 0) return;
  const float alpha = epilogue.alpha;
  const float beta = 0.0f;
  const int m = static_cast<int>(out_features);
  const int n = static_cast<int>(rows);
  const int k = static_cast<int>(in_features);
  FLEXGEN_CUBLAS_CHECK(cublasSetStream(handle, stream));
  FLEXGEN_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, weight,
                                    CUDA_R_16F, k, x, CUDA_R_16F, k, &beta, y, CUDA_R_16F, m,
                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  bias_act_residual(y, rows, out_features, bias, epilogue, stream);
}

// ---- fused path (cuBLASLt) ---------------------------------------------------------------------

namespace {

// The largest power of two up to 256 that divides the address (256 for null): cuBLASLt's
// heuristic assumes 256-byte alignment unless told otherwise, and reads the bias pointer's.
int alignment_of(const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  int align = 256;
  while (align > 1 && a % static_cast<std::uintptr_t>(align) != 0) align /= 2;
  return align;
}

}  // namespace

struct LinearContext::Impl {
  // One cached plan per (m, n, k, epilogue, residual, alignments of A, B, C/D, bias).
  using Key = std::tuple<int, int, int, int, bool, int, int, int, int>;
  struct Entry {
    bool ok = false;  // false: the heuristic found no algorithm; take the plain path
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, cd = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };

  cublasHandle_t blas = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
  bool fused = true;
  std::int64_t fused_calls = 0, plain_calls = 0;
  std::map<Key, Entry> plans;

  ~Impl() {
    for (auto& [key, e] : plans) {
      if (e.desc) cublasLtMatmulDescDestroy(e.desc);  // never throws from a destructor
      if (e.a) cublasLtMatrixLayoutDestroy(e.a);
      if (e.b) cublasLtMatrixLayoutDestroy(e.b);
      if (e.cd) cublasLtMatrixLayoutDestroy(e.cd);
    }
    if (lt) cublasLtDestroy(lt);
  }

  // The cached plan for the call, made on first use (descriptors, heuristic).
  const Entry& plan(int m, int n, int k, cublasLtEpilogue_t epi, bool residual, const void* a_ptr,
                    const void* b_ptr, const void* d_ptr, const void* c_ptr, const void* bias) {
    const int align_cd = std::min(alignment_of(d_ptr), alignment_of(c_ptr));
    const Key key{m, n, k, static_cast<int>(epi), residual, alignment_of(a_ptr), alignment_of(b_ptr), align_cd,
                  alignment_of(bias)};
    auto it = plans.find(key);
    if (it != plans.end()) return it->second;
    Entry& e = plans[key];
    const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
    FLEXGEN_CUBLAS_CHECK(cublasLtMatmulDescCreate(&e.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    FLEXGEN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(e.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof(op_t)));
    FLEXGEN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(e.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof(op_n)));
    FLEXGEN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(e.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
    if (bias != nullptr) {
      const cudaDataType_t bias_type = CUDA_R_16F;
      FLEXGEN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(e.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                          sizeof(bias_type)));
      FLEXGEN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(e.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                          sizeof(bias)));
    }
    // Column-major: A = W stored [k, m] (ld k), B = x stored [k, n] (ld k), C = D [m, n] (ld m).
    FLEXGEN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&e.a, CUDA_R_16F, static_cast<std::uint64_t>(k),
                                                    static_cast<std::uint64_t>(m), k));
    FLEXGEN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&e.b, CUDA_R_16F, static_cast<std::uint64_t>(k),
                                                    static_cast<std::uint64_t>(n), k));
    FLEXGEN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&e.cd, CUDA_R_16F, static_cast<std::uint64_t>(m),
                                                    static_cast<std::uint64_t>(n), m));
    cublasLtMatmulPreference_t pref = nullptr;
    FLEXGEN_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    constexpr int kCandidates = 8;
    cublasLtMatmulHeuristicResult_t results[kCandidates] = {};
    int found = 0;
    const std::uint32_t aligns[4] = {static_cast<std::uint32_t>(std::get<5>(key)),
                                     static_cast<std::uint32_t>(std::get<6>(key)),
                                     static_cast<std::uint32_t>(align_cd), static_cast<std::uint32_t>(align_cd)};
    const cublasLtMatmulPreferenceAttributes_t align_attrs[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                             &workspace_bytes, sizeof(workspace_bytes));
    for (int i = 0; i < 4 && st == CUBLAS_STATUS_SUCCESS; ++i) {
      st = cublasLtMatmulPreferenceSetAttribute(pref, align_attrs[i], &aligns[i], sizeof(aligns[i]));
    }
    if (st == CUBLAS_STATUS_SUCCESS) {
      // A shape or epilogue no algorithm takes is answered NOT_SUPPORTED (or no result): the
      // plain path then serves it.
      st = cublasLtMatmulAlgoGetHeuristic(lt, e.desc, e.a, e.b, e.cd, e.cd, pref, kCandidates, results, &found);
      if (st == CUBLAS_STATUS_NOT_SUPPORTED) {
        st = CUBLAS_STATUS_SUCCESS;
        found = 0;
      }
    }
    cublasLtMatmulPreferenceDestroy(pref);
    FLEXGEN_CUBLAS_CHECK(st);
    // The heuristic's best candidate that fits the workspace and, with a residual (C is the
    // residual, D = y), writes D out of place.
    for (int i = 0; i < found && !e.ok; ++i) {
      const cublasLtMatmulHeuristicResult_t& r = results[i];
      if (r.state != CUBLAS_STATUS_SUCCESS || r.workspaceSize > workspace_bytes) continue;
      if (residual) {
        std::int32_t out_of_place = 0;
        std::size_t written = 0;
        if (cublasLtMatmulAlgoCapGetAttribute(&r.algo, CUBLASLT_ALGO_CAP_OUT_OF_PLACE_RESULT_SUPPORT, &out_of_place,
                                              sizeof(out_of_place), &written) != CUBLAS_STATUS_SUCCESS ||
            out_of_place == 0) {
          continue;
        }
      }
      e.ok = true;
      e.algo = r.algo;
    }
    return e;
  }
};

LinearContext::LinearContext(cublasHandle_t blas, void* workspace, std::size_t workspace_bytes)
    : impl_(std::make_unique<Impl>()) {
  impl_->blas = blas;
  impl_->workspace = workspace;
  impl_->workspace_bytes = workspace == nullptr ? 0 : workspace_bytes;
  FLEXGEN_CUBLAS_CHECK(cublasLtCreate(&impl_->lt));
}

LinearContext::~LinearContext() = default;

cublasHandle_t LinearContext::blas() const { return impl_->blas; }
void LinearContext::set_fused(bool on) { impl_->fused = on; }
std::int64_t LinearContext::fused_calls() const { return impl_->fused_calls; }
std::int64_t LinearContext::plain_calls() const { return impl_->plain_calls; }

void linear(LinearContext& ctx, const __half* x, std::int64_t rows, std::int64_t in_features,
            const __half* weight, const __half* bias, std::int64_t out_features, __half* y,
            const LinearEpilogue& epilogue, cudaStream_t stream) {
  constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();
  assert(rows >= 0 && in_features >= 1 && out_features >= 0);
  if (rows == 0 || out_features == 0) return;
  LinearContext::Impl& c = *ctx.impl_;
  // A scale after the bias folds into alpha only when there is no bias.
  const bool scale_ok = epilogue.scale == 1.0f || bias == nullptr;
  const bool takes = c.fused && scale_ok && !(epilogue.relu && epilogue.residual != nullptr) &&
                     (bias == nullptr || detail::aligned_to(bias, 16)) && rows <= kIntMax &&
                     in_features <= kIntMax && out_features <= kIntMax;
  if (takes) {
    const int m = static_cast<int>(out_features);
    const int n = static_cast<int>(rows);
    const int k = static_cast<int>(in_features);
    const cublasLtEpilogue_t epi = bias != nullptr ? (epilogue.relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS)
                                                   : (epilogue.relu ? CUBLASLT_EPILOGUE_RELU : CUBLASLT_EPILOGUE_DEFAULT);
    const bool residual = epilogue.residual != nullptr;
    const __half* c_ptr = residual ? epilogue.residual : y;
    const LinearContext::Impl::Entry& e = c.plan(m, n, k, epi, residual, weight, x, y, c_ptr, bias);
    if (e.ok) {
      if (bias != nullptr) {
        FLEXGEN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(e.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                            sizeof(bias)));
      }
      const float alpha = epilogue.alpha * epilogue.scale;
      const float beta = residual ? 1.0f : 0.0f;
      FLEXGEN_CUBLAS_CHECK(cublasLtMatmul(c.lt, e.desc, &alpha, weight, e.a, x, e.b, &beta, c_ptr, e.cd, y, e.cd,
                                          &e.algo, c.workspace, c.workspace_bytes, stream));
      ++c.fused_calls;
      return;
    }
  }
  ++c.plain_calls;
  linear(c.blas, x, rows, in_features, weight, bias, out_features, y, epilogue, stream);
}

}  // namespace flexgen::cuda
