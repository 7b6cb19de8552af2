#include "engine/batch/blocks.h"

#include "engine/core/error.h"

#include <algorithm>
#include <cassert>
#include <map>
#include <tuple>

namespace flexgen {
namespace {

// Orders sampling classes: greedy first, then by (temperature, top_k, top_p, seed).
auto class_key(const SamplingConfig& s) { return std::make_tuple(s.do_sample, s.temperature, s.top_k, s.top_p, s.seed); }

std::int64_t length_of(const BatchPrompt& p) { return static_cast<std::int64_t>(p.tokens.size()); }

}  // namespace

double PaddingStats::padding_waste() const {
  return prompt_positions > 0
             ? static_cast<double>(prompt_positions - prompt_tokens) / static_cast<double>(prompt_positions)
             : 0.0;
}

double PaddingStats::generation_waste() const {
  return generation_positions > 0 ? static_cast<double>(generation_positions - requested_new_tokens) /
                                        static_cast<double>(generation_positions)
                                  : 0.0;
}

void PaddingStats::add(const PaddingStats& o) {
  prompt_tokens += o.prompt_tokens;
  prompt_positions += o.prompt_positions;
  requested_new_tokens += o.requested_new_tokens;
  generation_positions += o.generation_positions;
}

PaddingStats block_padding(const PromptBlock& block, const std::vector<BatchPrompt>& prompts,
                           std::int64_t block_size) {
  PaddingStats s;
  for (std::size_t i : block.members) {
    s.prompt_tokens += length_of(prompts[i]);
    s.requested_new_tokens += prompts[i].max_new_tokens;
  }
  s.prompt_positions = block_size * block.prompt_len;
  s.generation_positions = block_size * block.gen_len;
  return s;
}

void pad_to_longest(BlockPlan& plan, const std::vector<BatchPrompt>& prompts, std::int64_t max_positions) {
  std::int64_t longest = 0, most_new = 0;
  for (const PromptBlock& b : plan.blocks) {
    longest = std::max(longest, b.prompt_len);
    most_new = std::max(most_new, b.gen_len);
  }
  FLEXGEN_REQUIRE(longest + most_new <= max_positions, "--pad-to-longest: prompts of ", longest, " tokens plus ",
                  most_new, " new tokens exceed the model's ", max_positions, " positions");
  plan.padding = PaddingStats{};
  for (PromptBlock& b : plan.blocks) {
    b.prompt_len = longest;
    b.gen_len = most_new;
    plan.padding.add(block_padding(b, prompts, plan.block_size));
  }
  plan.max_prompt_len = longest;
  plan.max_total_len = longest + most_new;
}

BlockPlan group_into_blocks(const std::vector<BatchPrompt>& prompts, std::int64_t block_size,
                            std::int64_t max_positions) {
  assert(block_size >= 1);
  std::map<decltype(class_key(SamplingConfig{})), std::vector<std::size_t>> classes;
  for (std::size_t i = 0; i < prompts.size(); ++i) classes[class_key(prompts[i].sampling)].push_back(i);

  BlockPlan plan;
  plan.block_size = block_size;
  for (auto& [key, members] : classes) {
    std::sort(members.begin(), members.end(), [&](std::size_t a, std::size_t b) {
      return std::make_tuple(length_of(prompts[a]), prompts[a].max_new_tokens, prompts[a].line) <
             std::make_tuple(length_of(prompts[b]), prompts[b].max_new_tokens, prompts[b].line);
    });
    PromptBlock current;
    // The class's partial block (n mod block_size prompts) comes first, with the shortest prompts:
    // its filler slots then pad the least.
    const auto n = static_cast<std::int64_t>(members.size());
    std::int64_t capacity = n % block_size == 0 ? block_size : n % block_size;
    auto close = [&] {
      if (current.members.empty()) return;
      plan.max_prompt_len = std::max(plan.max_prompt_len, current.prompt_len);
      plan.max_total_len = std::max(plan.max_total_len, current.prompt_len + current.gen_len);
      plan.padding.add(block_padding(current, prompts, block_size));
      plan.blocks.push_back(std::move(current));
      current = PromptBlock{};
      capacity = block_size;
    };
    for (std::size_t i : members) {
      const BatchPrompt& p = prompts[i];
      // Sorted by length, so p is the block's longest prompt once added.
      const std::int64_t gen = std::max(current.gen_len, p.max_new_tokens);
      if (static_cast<std::int64_t>(current.members.size()) == capacity || length_of(p) + gen > max_positions) {
        close();
      }
      current.members.push_back(i);
      current.prompt_len = length_of(p);
      current.gen_len = std::max(current.gen_len, p.max_new_tokens);
      current.sampling = p.sampling;
    }
    close();
  }
  return plan;
}

std::vector<std::vector<std::int32_t>> block_inputs(const PromptBlock& block, const std::vector<BatchPrompt>& prompts,
                                                    std::int64_t block_size) {
  assert(!block.members.empty() && static_cast<std::int64_t>(block.members.size()) <= block_size);
  std::vector<std::vector<std::int32_t>> out;
  out.reserve(static_cast<std::size_t>(block_size));
  for (std::size_t i : block.members) out.push_back(prompts[i].tokens);
  while (static_cast<std::int64_t>(out.size()) < block_size) out.push_back(prompts[block.members.front()].tokens);
  return out;
}

}  // namespace flexgen
