#pragma once
// Decode attention on the GPU: one query per unit over its cached positions and itself, dense or
// over a top-k selection. Memory-bound: every key and value row is read once, 16 bytes per lane.
// Host-includable declarations; device pointers.
#include <cstddef>
#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "engine/cuda/ops/kv_view.cuh"
#include "engine/runtime/cuda_workspace.h"

namespace flexgen::cuda {

// decode_attention_workspace_bytes (runtime/cuda_workspace.h, shared with the cost model): the
// fp32 workspace a split-position launch needs.

// The number of position splits decode_attention uses for `rows` rows per unit when num_splits is
// 0: enough blocks to keep the memory system busy (6 blocks of 128 threads per multiprocessor), at least 256
// rows per split, at most 64 splits, capped by the workspace; 1 without workspace.
int decode_attention_splits(std::int64_t units, int head_dim, std::int64_t rows,
                            std::size_t workspace_bytes);

// Dense decode: the query of unit u = b * num_heads + h sits at position `past`; it attends to
// positions pad_len[b] .. past (its own new key and value must already be in the cache at
// `past`), as unit_attention with T = 1.
//   q, out:   [batch * num_heads, head_dim] (i.e. [batch, 1, num_heads * head_dim]), q scaled
//   pad_len:  [batch] int32
// Units in no part of kv are skipped. num_splits: 0 chooses (decode_attention_splits), n >= 1
// forces n (capped by the workspace). With more than one split, `workspace` (fp32,
// decode_attention_workspace_bytes) holds per-split partial results that a second kernel
// combines. Throws flexgen::Error when head_dim is outside 1..128.
//
// Launch: grid (units, splits), 128 threads (4 warps). A row of head_dim values is read by
// head_dim / 8 lanes (8 or 16), 16 bytes each, so a warp reads 2 or 4 rows per load and each of
// its row groups keeps its own online softmax (running max, sum and output in registers); the
// block combines its 8 or 16 row groups in shared memory and writes the output (one split) or its
// partial result.
void decode_attention(const __half* q, const KvView& kv, const std::int32_t* pad_len,
                      std::int64_t batch, int num_heads, int head_dim, std::int64_t past,
                      __half* out, float* workspace, std::size_t workspace_bytes, int num_splits,
                      cudaStream_t stream);

// Sparse decode (FlexGen's top-k attention, second half): the query at position `past` attends to
// the kept positions of its unit (kept: [units, k] int32, as select_top_k writes them; kept
// positions below pad_len[b] are skipped) and to itself, with a softmax over those only, as
// sparse_unit_attention in engine/runtime/unit_attention.h. Only the kept value rows and the
// own row are read. With grouped-query attention (kv.group > 1, kv_view.cuh) the units are query
// units and `kept` holds one selection per key/value unit, [units / kv.group, k], shared by its
// query heads. Same layouts, launch and splits as decode_attention (k + 1 rows per unit).
void sparse_decode_attention(const __half* q, const KvView& kv, const std::int32_t* pad_len,
                             std::int64_t batch, int num_heads, int head_dim, std::int64_t past,
                             const std::int32_t* kept, int k, __half* out, float* workspace,
                             std::size_t workspace_bytes, int num_splits, cudaStream_t stream);

}  // namespace flexgen::cuda
