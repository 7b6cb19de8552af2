#pragma once
// The CUDA backend's compute workspace on the GPU: every buffer it holds besides the planned
// weights, cache and activations (memory_plan.h), sized for the plan's largest visit and allocated
// once, all at the same time. Host code without CUDA: the backend allocates these sizes and the cost
// model prices them (costmodel/memory_model.h), so the policy search plans what the backend takes.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/runtime/plan.h"

namespace flexgen {

inline constexpr Bytes kCudaGpuAlign = 256;                    // every GPU buffer starts aligned
inline constexpr Bytes kCudaCublasWorkspace = 32 * kMiB;       // cuBLAS's own workspace
inline constexpr Bytes kCudaPrefillScoresBudget = 256 * kMiB;  // score buffer of the tensor-core prefill attention
inline constexpr int kCudaMaxDecodeSplits = 64;                // position splits of decode attention
// Prompts from this length take the tensor-core prefill attention; shorter ones the CUDA-core
// kernel (exact per unit, no score buffer).
inline constexpr std::int64_t kCudaGemmPrefillMinTokens = 32;
// Device memory a plan leaves free for the CUDA runtime and cuBLAS, which take some after the
// arena is allocated (kernel modules loaded at their first launch, cuBLASLt's internal state). A
// searched OPT-30B policy that left 60 MB free on an H100 failed at a random cublasLtMatmul
// launch (CUBLAS_STATUS_EXECUTION_FAILED) while the same policy with 3 GB free ran (docs/
// experiments.md). The backend refuses a plan that leaves less; `flexgen profile` takes it off the
// measured free memory, so the policy search plans within what the backend accepts.
inline constexpr Bytes kCudaGpuReserve = 512 * kMiB;
// What the cost model adds for the alignment padding of the planned buffers (each weight tensor and
// cache buffer starts at a kCudaGpuAlign boundary: at most 255 bytes each, a few thousand buffers).
inline constexpr Bytes kCudaPaddingAllowance = 64 * kMiB;

struct CudaWorkspaceSizes {
  Bytes ln = 0, q = 0, k = 0, v = 0, attn = 0, tmp = 0, mlp = 0, new_rows = 0, cache_dq = 0, weights_dq = 0,
        logits = 0, last = 0, ids = 0, pad_len = 0, splits = 0, prefill = 0, kept = 0, cublas = 0, up = 0,
        next = 0;

  struct Part {
    const char* label;
    Bytes bytes;
  };
  // Every buffer with its label for the memory plan (zero-sized ones left out).
  std::vector<Part> parts() const;
  // Bytes taken on the GPU: every part rounded up to kCudaGpuAlign.
  Bytes total() const;
};

CudaWorkspaceSizes cuda_workspace_sizes(const Plan& plan);

namespace cuda {
// Bytes of fp32 workspace a split-position decode attention launch needs: units * splits *
// (head_dim + 2) floats.
std::size_t decode_attention_workspace_bytes(std::int64_t units, int head_dim, int splits);
// Workspace bytes for the tensor-core prefill attention to process `chunk_units` units per step
// (the fp16 scores, 256-byte aligned, plus kPrefillPointerArrays pointer arrays per unit).
inline constexpr std::size_t kPrefillPointerArrays = 6;  // A, B, C of the two batched GEMMs
std::size_t prefill_attention_gemm_workspace_bytes(std::int64_t chunk_units, std::int64_t tokens,
                                                   std::int64_t past);
}  // namespace cuda

}  // namespace flexgen
