#pragma once
// Linear layers on the GPU: cuBLAS GEMM (fp16 inputs and output, fp32 accumulation, tensor cores)
// followed by a small epilogue kernel for bias, ReLU and a residual. Host-includable declarations;
// device pointers.
//
// Row-major data, HF weight layout: x [rows, in], weight [out, in], y [rows, out], computed as the
// column-major product y^T = W x^T: cublasGemmEx(OP_T, OP_N, m = out, n = rows, k = in,
// A = weight (lda = in), B = x (ldb = in), C = y (ldc = out)), CUDA_R_16F for A, B and C,
// CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT (cuBLAS picks a tensor-op kernel).
//
// Epilogue, as a separate elementwise kernel rather than a cublasLt epilogue: it keeps to the
// plain cuBLAS API (no Lt heuristics, workspace or bias-alignment rules to get right) and costs one
// extra pass over y, which is small against the GEMM for every OPT shape (decode: y is
// [batch, out] against an [out, in] weight; prefill: 3 fp16 values moved per 2 * in FLOPs).
// It rounds the GEMM result to fp16 once more than a fused epilogue would.
#include <cstdint>

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace flexgen::cuda {

struct LinearEpilogue {
  float scale = 1.0f;                // y = (y + bias) * scale, first
  bool relu = false;                 // y = max(y, 0) after the bias and scale
  const __half* residual = nullptr;  // [rows, out], added last; must not alias y or x
};

// y = act((x W^T + bias) * scale) + residual, fp32 math in the epilogue. bias is [out] or null. y must not
// alias x, weight or the residual. Sets `stream` on `handle`. rows, in, out < 2^31.
void linear(cublasHandle_t handle, const __half* x, std::int64_t rows, std::int64_t in_features,
            const __half* weight, const __half* bias, std::int64_t out_features, __half* y,
            const LinearEpilogue& epilogue, cudaStream_t stream);

// The epilogue alone, in place on y [rows, out]: y = act((y + bias) * scale) + residual.
void bias_act_residual(__half* y, std::int64_t rows, std::int64_t out_features,
                       const __half* bias, const LinearEpilogue& epilogue, cudaStream_t stream);

}  // namespace flexgen::cuda
