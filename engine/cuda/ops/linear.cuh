#pragma once
// Linear layers on the GPU: fp16 inputs and output, fp32 accumulation, tensor cores. Two paths:
//
// - fused (LinearContext): one cublasLtMatmul with the epilogue in the GEMM: bias
//   (CUBLASLT_EPILOGUE_BIAS), bias and ReLU (RELU_BIAS), ReLU alone (RELU), and the residual as
//   C with beta = 1 (D = alpha A B + C + bias, D != C). y is rounded to fp16 once. The algorithm
//   of each (shape, epilogue, pointer alignments) is chosen once by cuBLASLt's heuristic and
//   cached with its descriptors, so a call costs the launch only.
// - plain: cublasGemmEx followed by the elementwise epilogue kernel bias_act_residual (one more
//   pass over y, and y rounded twice). The fused path falls back to it for what it does not take
//   (ReLU with a residual, a scale after the bias, a bias not 16-byte aligned, shapes over 2^31)
//   and for any shape for which cuBLASLt's heuristic returns no algorithm.
//
// Row-major data, HF weight layout: x [rows, in], weight [out, in], y [rows, out], computed as the
// column-major product y^T = W x^T: (OP_T, OP_N, m = out, n = rows, k = in, A = weight (lda = in),
// B = x (ldb = in), C = D = y (ldc = out)), CUDA_R_16F for A, B, C, D and the bias,
// CUBLAS_COMPUTE_32F with fp32 alpha and beta. The bias is a vector over m (D's rows), broadcast
// over the n columns: one value per output feature.
#include <cstddef>
#include <cstdint>
#include <memory>

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace flexgen::cuda {

struct LinearEpilogue {
  float alpha = 1.0f;                // scales x W^T, before the bias
  float scale = 1.0f;                // y = (y + bias) * scale, after the bias (plain path only)
  bool relu = false;                 // y = max(y, 0) after the bias and scale
  const __half* residual = nullptr;  // [rows, out], added last; must not alias y or x
};

// The plain path: y = act((alpha x W^T + bias) * scale) + residual, fp32 math in the epilogue.
// bias is [out] or null. y must not alias x, weight or the residual. Sets `stream` on `handle`.
// rows, in, out < 2^31.
void linear(cublasHandle_t handle, const __half* x, std::int64_t rows, std::int64_t in_features,
            const __half* weight, const __half* bias, std::int64_t out_features, __half* y,
            const LinearEpilogue& epilogue, cudaStream_t stream);

// The epilogue alone, in place on y [rows, out]: y = act((y + bias) * scale) + residual.
void bias_act_residual(__half* y, std::int64_t rows, std::int64_t out_features,
                       const __half* bias, const LinearEpilogue& epilogue, cudaStream_t stream);

// What the fused path needs: a cuBLASLt handle, the workspace its algorithms may use, and the cache
// of chosen algorithms. The workspace may be the cuBLAS handle's own (cublasSetWorkspace): both
// only use it in stream order. Not thread-safe: one context per thread that issues GEMMs.
class LinearContext {
 public:
  LinearContext(cublasHandle_t blas, void* workspace, std::size_t workspace_bytes);
  ~LinearContext();
  LinearContext(const LinearContext&) = delete;
  LinearContext& operator=(const LinearContext&) = delete;

  cublasHandle_t blas() const;
  // Off: every call takes the plain path (for tests and comparisons). On by default.
  void set_fused(bool on);
  // Calls that took each path since the context was made.
  std::int64_t fused_calls() const;
  std::int64_t plain_calls() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  friend void linear(LinearContext&, const __half*, std::int64_t, std::int64_t, const __half*,
                     const __half*, std::int64_t, __half*, const LinearEpilogue&, cudaStream_t);
};

// y = act((alpha x W^T + bias) * scale) + residual: the fused path when it takes the call, else the
// plain path (see the top of this file). Same contract as the plain linear; the residual must not
// alias y.
void linear(LinearContext& ctx, const __half* x, std::int64_t rows, std::int64_t in_features,
            const __half* weight, const __half* bias, std::int64_t out_features, __half* y,
            const LinearEpilogue& epilogue, cudaStream_t stream);

}  // namespace flexgen::cuda
