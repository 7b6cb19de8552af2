#pragma once
// Prefill attention on tensor cores: per unit and causal block of queries, scores = Q K^T (cuBLAS
// batched GEMM, fp16 in, fp32 accumulation, fp16 out), a masked softmax kernel, then out = P V (a
// second batched GEMM). The
// same contract as prefill_attention (prefill_attention.cuh): causal over positions
// pad_len[b] .. p, a padding query attends to its own key only, units in no part are skipped.
// Trades memory traffic over a [units, tokens, past + tokens] fp16 score buffer for tensor-core
// math; faster than the CUDA-core kernel from a few hundred tokens (docs/cuda-kernels.md).
// Host-includable declarations; device pointers.
#include <cstddef>
#include <cstdint>

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "engine/cuda/ops/kv_view.cuh"
#include "engine/runtime/cuda_workspace.h"

namespace flexgen::cuda {

// Queries per causal block: the queries [q0, q0 + kPrefillQueryBlock) of a unit are scored against
// keys [0, past + q0 + kPrefillQueryBlock) only (for T = 512, 62.5% of the full T x T work).
inline constexpr std::int64_t kPrefillQueryBlock = 128;

// prefill_attention_gemm_workspace_bytes (runtime/cuda_workspace.h, shared with the cost model):
// the workspace to process `chunk_units` units per step (scores plus pointer arrays).

// q, out: [batch, tokens, num_heads * head_dim], q scaled. The units are processed in chunks as
// large as `workspace_bytes` allows (at least one unit must fit: flexgen::Error otherwise). Sets
// `stream` on `handle`.
void prefill_attention_gemm(cublasHandle_t handle, const __half* q, const KvView& kv,
                            const std::int32_t* pad_len, std::int64_t batch, int num_heads,
                            int head_dim, std::int64_t tokens, std::int64_t past, __half* out,
                            void* workspace, std::size_t workspace_bytes, cudaStream_t stream);

// The masked softmax alone, in place on scores [units, tokens, past + tokens] (fp32 math): row
// (u, t) keeps keys pad_len[b] .. past + t (b = (unit_begin + u) / num_heads), or only key
// past + t when that position is padding; other entries become 0.
void masked_causal_softmax(__half* scores, std::int64_t units, std::int64_t unit_begin,
                           int num_heads, const std::int32_t* pad_len, std::int64_t tokens,
                           std::int64_t past, cudaStream_t stream);

}  // namespace flexgen::cuda
