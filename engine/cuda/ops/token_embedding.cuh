#pragma once
// LLaMA's input embedding on the GPU: the token rows alone (positions enter through the rotary
// embeddings). Host-includable declarations; device pointers.
#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace flexgen::cuda {

// out[r, :] = table[ids[r], :] for `rows` ids; an id outside [0, vocab) gives a row of NaN (the
// caller validates ids first, as llama_embed does). One block per row, 16-byte accesses when
// hidden % 8 == 0 and the pointers are aligned.
void token_embedding(const std::int32_t* ids, std::int64_t rows, const __half* table, std::int64_t vocab,
                     std::int64_t hidden, __half* out, cudaStream_t stream);

}  // namespace flexgen::cuda
