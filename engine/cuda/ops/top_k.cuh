#pragma once
// Top-k position selection for sparse decode attention (FlexGen's top-k, first half) on the GPU.
// Host-includable declarations; device pointers.
#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "engine/cuda/ops/kv_view.cuh"

namespace flexgen::cuda {

// Most cached positions select_top_k takes (the scores of a unit live in shared memory).
inline constexpr std::int64_t kMaxTopKPositions = 8192;

// For every unit u = b * num_heads + h held by kv (keys only are read): the k positions in
// [0, past) with the highest scores q . key (positions below pad_len[b] score -inf; ties go to the
// lower position), written in ascending order to kept[u * k .. u * k + k - 1]; as select_top_k in
// engine/runtime/unit_attention.h. Scores are fp32 dot products summed in another order than the
// host's, so the two can disagree where two scores lie within fp32 rounding of each other.
//   q: [batch * num_heads, head_dim], pad_len: [batch] int32, kept: [units, k] int32
// Throws flexgen::Error when head_dim is outside 1..128, past > kMaxTopKPositions or k is not in
// 1..past. Units in no part of kv are skipped.
//
// Launch: one block of 256 threads per unit. The scores go to shared memory (past floats, rows
// read as in decode_attention); a radix select over the order-preserving 32-bit image of the
// scores (4 passes of 8 bits, histograms in shared memory with warp-aggregated atomics) finds the
// k-th largest score and how many of the positions equal to it to keep; two block-wide ordered
// counts then write the kept positions in ascending order.
void select_top_k(const __half* q, const KvView& kv, const std::int32_t* pad_len,
                  std::int64_t batch, int num_heads, int head_dim, std::int64_t past, int k,
                  std::int32_t* kept, cudaStream_t stream);

}  // namespace flexgen::cuda
