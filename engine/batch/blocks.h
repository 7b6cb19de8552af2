#pragma once
// Grouping the prompts of `flexgen batch` into blocks (docs/batch.md, "Grouping").
//
// A block runs with one SamplingConfig, so prompts are first split into sampling classes: all
// greedy prompts form one class, sampled prompts one class per distinct (temperature, top_k,
// top_p, seed). Classes come greedy first, then sampled ones in increasing order of those
// fields. Within a class, prompts are sorted by (prompt length, max_new_tokens, input line) and
// cut into consecutive blocks: first one of n mod block_size prompts (when not 0), then blocks of
// block_size, so that the one partial block holds the shortest prompts. A block also closes early
// when the next prompt would take it past the model's context (its longest prompt plus its
// largest max_new_tokens > max_positions). Each block's shape is its longest prompt and its
// largest max_new_tokens. Empty slots of a partial block are filled with copies of the block's
// first (shortest) prompt, whose outputs are dropped. Without cuts at the context, this gives the
// fewest padded prompt positions of any grouping of a class into blocks of block_size.
//
// Padding waste: over all blocks, prompt positions computed (block_size x the block's prompt_len,
// filler slots included) minus the real prompt tokens, divided by the positions computed.
// Generation waste likewise: decode positions computed (block_size x gen_len) minus the
// max_new_tokens asked for, divided by the positions computed.
#include <cstdint>
#include <vector>

#include "engine/batch/prompt_file.h"

namespace flexgen {

struct PromptBlock {
  std::vector<std::size_t> members;  // indices into the prompt list, shortest first
  std::int64_t prompt_len = 0;       // the longest member prompt
  std::int64_t gen_len = 0;          // the largest member max_new_tokens
  SamplingConfig sampling;
};

struct PaddingStats {
  std::int64_t prompt_tokens = 0;            // real prompt tokens
  std::int64_t prompt_positions = 0;         // block_size x prompt_len, summed over blocks
  std::int64_t requested_new_tokens = 0;     // max_new_tokens, summed over prompts
  std::int64_t generation_positions = 0;     // block_size x gen_len, summed over blocks
  double padding_waste() const;              // (prompt_positions - prompt_tokens) / prompt_positions
  double generation_waste() const;           // likewise for generation; 0 when nothing is computed
  void add(const PaddingStats& other);
};

struct BlockPlan {
  std::int64_t block_size = 0;
  std::vector<PromptBlock> blocks;  // in run order
  std::int64_t max_prompt_len = 0;  // the largest block prompt_len
  std::int64_t max_total_len = 0;   // the largest block prompt_len + gen_len
  PaddingStats padding;
};

// Groups `prompts` (all of which fit `max_positions`; see read_prompt_file) into blocks of up to
// `block_size` (>= 1) prompts as described above.
BlockPlan group_into_blocks(const std::vector<BatchPrompt>& prompts, std::int64_t block_size,
                            std::int64_t max_positions);

// FlexGen's way, for comparison: every block padded to the longest prompt of the plan (and its
// largest gen_len), as if all prompts had one fixed length. Recomputes the padding statistics;
// the blocks keep their members. Refuses (flexgen::Error) when that shape exceeds max_positions.
void pad_to_longest(BlockPlan& plan, const std::vector<BatchPrompt>& prompts, std::int64_t max_positions);

// The padding of one block (its share of BlockPlan::padding).
PaddingStats block_padding(const PromptBlock& block, const std::vector<BatchPrompt>& prompts,
                           std::int64_t block_size);

// The block_size prompts the runtime gets for `block`: its members, then filler.
std::vector<std::vector<std::int32_t>> block_inputs(const PromptBlock& block, const std::vector<BatchPrompt>& prompts,
                                                    std::int64_t block_size);

}  // namespace flexgen
