#pragma once
// OPT's input embedding on the GPU: token rows plus learned position rows, fp16 storage, the sum
// in fp32 rounded once (as the host: a float sum rounded to the model dtype). Host-includable
// declarations; device pointers.
#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace flexgen::cuda {

// hidden[b, t, :] = tokens[ids[b * T + t], :] + positions[row(b, past + t), :] for B = batch
// sequences of T = tokens new tokens each, where row(b, pos) = pos < pad_len[b] ? 1
// : pos - pad_len[b] + 2 (BatchState::position_row in engine/model/opt_layer.h).
//   ids:       [B * T] int32          token_table:    [vocab, hidden]
//   pad_len:   [B] int32              position_table: [position_rows, hidden]
//   out:       [B, T, hidden]
// The caller validates ids and positions (the runtime does on the host, as opt_embed); a row whose
// id or position row is out of range is filled with NaN instead of reading outside the tables.
// Launch: one block per output row, 16-byte accesses when hidden % 8 == 0 and aligned.
void embedding(const std::int32_t* ids, const std::int32_t* pad_len, std::int64_t batch,
               std::int64_t tokens, std::int64_t past, const __half* token_table,
               std::int64_t vocab, const __half* position_table, std::int64_t position_rows,
               std::int64_t hidden, __half* out, cudaStream_t stream);

}  // namespace flexgen::cuda
