// Grouping prompts into blocks: expected blocks, shapes and padding worked out by hand.
#include "engine/batch/blocks.h"

#include <gtest/gtest.h>

#include "engine/core/error.h"

namespace flexgen {
namespace {

BatchPrompt prompt(std::int64_t line, std::int64_t length, std::int64_t max_new = 4, SamplingConfig s = {}) {
  BatchPrompt p;
  p.id = line;
  p.key = std::to_string(line);
  p.line = line;
  p.tokens.assign(static_cast<std::size_t>(length), 2);
  p.tokens[0] = static_cast<std::int32_t>(100 + line);  // tells the prompts apart
  p.max_new_tokens = max_new;
  p.sampling = s;
  return p;
}

std::vector<std::vector<std::size_t>> members(const BlockPlan& plan) {
  std::vector<std::vector<std::size_t>> out;
  for (const PromptBlock& b : plan.blocks) out.push_back(b.members);
  return out;
}

TEST(Blocks, SortedByLengthThenMaxNewTokensThenLine) {
  // index: 0     1     2     3     4     5     6
  // len:   5     2     9     2     5     1     3
  // new:   4     4     4     6     2     4     4
  std::vector<BatchPrompt> ps = {prompt(1, 5), prompt(2, 2),    prompt(3, 9), prompt(4, 2, 6),
                                 prompt(5, 5, 2), prompt(6, 1), prompt(7, 3)};
  const BlockPlan plan = group_into_blocks(ps, 3, 128);
  // Order: 5 (1), 1 (2,4), 3 (2,6), 6 (3), 4 (5,2), 0 (5,4), 2 (9); 7 = 1 + 2 x 3, the partial
  // block first.
  EXPECT_EQ(members(plan), (std::vector<std::vector<std::size_t>>{{5}, {1, 3, 6}, {4, 0, 2}}));
  ASSERT_EQ(plan.blocks.size(), 3u);
  EXPECT_EQ(plan.blocks[0].prompt_len, 1);
  EXPECT_EQ(plan.blocks[0].gen_len, 4);
  EXPECT_EQ(plan.blocks[1].prompt_len, 3);
  EXPECT_EQ(plan.blocks[1].gen_len, 6);
  EXPECT_EQ(plan.blocks[2].prompt_len, 9);
  EXPECT_EQ(plan.blocks[2].gen_len, 4);
  EXPECT_EQ(plan.max_prompt_len, 9);
  EXPECT_EQ(plan.max_total_len, 13);
  // Prompt tokens 5+2+9+2+5+1+3 = 27; positions 3*1 + 3*3 + 3*9 = 39 (partial last instead:
  // 3*2 + 3*5 + 3*9 = 48).
  EXPECT_EQ(plan.padding.prompt_tokens, 27);
  EXPECT_EQ(plan.padding.prompt_positions, 39);
  EXPECT_DOUBLE_EQ(plan.padding.padding_waste(), 12.0 / 39.0);
  // Asked 4*5 + 6 + 2 = 28; computed 3*4 + 3*6 + 3*4 = 42.
  EXPECT_EQ(plan.padding.requested_new_tokens, 28);
  EXPECT_EQ(plan.padding.generation_positions, 42);
  EXPECT_DOUBLE_EQ(plan.padding.generation_waste(), 14.0 / 42.0);
}

TEST(Blocks, PadToLongestGivesEveryBlockTheLongestShape) {
  std::vector<BatchPrompt> ps = {prompt(1, 5), prompt(2, 2),    prompt(3, 9), prompt(4, 2, 6),
                                 prompt(5, 5, 2), prompt(6, 1), prompt(7, 3)};
  BlockPlan plan = group_into_blocks(ps, 3, 128);
  pad_to_longest(plan, ps, 128);
  EXPECT_EQ(members(plan), (std::vector<std::vector<std::size_t>>{{5}, {1, 3, 6}, {4, 0, 2}}));
  for (const PromptBlock& b : plan.blocks) {
    EXPECT_EQ(b.prompt_len, 9);
    EXPECT_EQ(b.gen_len, 6);
  }
  // Positions 3 blocks x 3 x 9 = 81 for 27 real tokens; generation 3 x 3 x 6 = 54 for 28 asked.
  EXPECT_EQ(plan.padding.prompt_positions, 81);
  EXPECT_DOUBLE_EQ(plan.padding.padding_waste(), 54.0 / 81.0);
  EXPECT_EQ(plan.padding.generation_positions, 54);
  EXPECT_EQ(plan.max_prompt_len, 9);
  EXPECT_EQ(plan.max_total_len, 15);
  EXPECT_THROW(pad_to_longest(plan, ps, 14), Error);
}

TEST(Blocks, FullClassesHaveNoPartialBlock) {
  std::vector<BatchPrompt> ps;
  for (int i = 0; i < 6; ++i) ps.push_back(prompt(i + 1, 6 - i));
  const BlockPlan plan = group_into_blocks(ps, 2, 128);
  EXPECT_EQ(members(plan), (std::vector<std::vector<std::size_t>>{{5, 4}, {3, 2}, {1, 0}}));
  EXPECT_DOUBLE_EQ(plan.padding.padding_waste(), 3.0 / 24.0);  // 2*2 + 2*4 + 2*6 = 24, 21 tokens
}

TEST(Blocks, SamplingClassesNeverShareABlockAndGreedyComesFirst) {
  SamplingConfig hot;
  hot.do_sample = true;
  hot.temperature = 0.7f;
  SamplingConfig hot_seed = hot;
  hot_seed.seed = 9;
  std::vector<BatchPrompt> ps = {prompt(1, 3, 4, hot), prompt(2, 3), prompt(3, 2, 4, hot_seed), prompt(4, 4, 4, hot),
                                 prompt(5, 1)};
  const BlockPlan plan = group_into_blocks(ps, 4, 128);
  EXPECT_EQ(members(plan), (std::vector<std::vector<std::size_t>>{{4, 1}, {0, 3}, {2}}));
  EXPECT_EQ(plan.blocks[0].sampling, SamplingConfig{});
  EXPECT_EQ(plan.blocks[1].sampling, hot);
  EXPECT_EQ(plan.blocks[2].sampling, hot_seed);
  // Filler slots count as padding: 4*3 + 4*4 + 4*2 = 36 positions for 3+3+2+4+1 = 13 tokens.
  EXPECT_EQ(plan.padding.prompt_positions, 36);
  EXPECT_EQ(plan.padding.prompt_tokens, 13);
}

TEST(Blocks, ABlockClosesBeforeItWouldExceedTheContext) {
  // 20 positions: 5 + 14 fits, but 8 + 14 (the block's largest max_new_tokens) would not.
  std::vector<BatchPrompt> ps = {prompt(1, 5, 14), prompt(2, 8, 2), prompt(3, 9, 2)};
  const BlockPlan plan = group_into_blocks(ps, 8, 20);
  EXPECT_EQ(members(plan), (std::vector<std::vector<std::size_t>>{{0}, {1, 2}}));
  EXPECT_EQ(plan.blocks[0].prompt_len + plan.blocks[0].gen_len, 19);
  EXPECT_EQ(plan.blocks[1].prompt_len, 9);
  EXPECT_EQ(plan.blocks[1].gen_len, 2);
  EXPECT_EQ(plan.max_prompt_len, 9);
  EXPECT_EQ(plan.max_total_len, 19);
}

TEST(Blocks, InputsAreTheMembersThenCopiesOfTheShortest) {
  std::vector<BatchPrompt> ps = {prompt(1, 3), prompt(2, 2)};
  const BlockPlan plan = group_into_blocks(ps, 4, 128);
  ASSERT_EQ(plan.blocks.size(), 1u);
  const auto in = block_inputs(plan.blocks[0], ps, 4);
  ASSERT_EQ(in.size(), 4u);
  EXPECT_EQ(in[0], ps[1].tokens);
  EXPECT_EQ(in[1], ps[0].tokens);
  EXPECT_EQ(in[2], ps[1].tokens);
  EXPECT_EQ(in[3], ps[1].tokens);
}

TEST(Blocks, WasteIsZeroWithoutWork) {
  const PaddingStats none;
  EXPECT_EQ(none.padding_waste(), 0.0);
  EXPECT_EQ(none.generation_waste(), 0.0);
  EXPECT_TRUE(group_into_blocks({}, 4, 128).blocks.empty());
}

}  // namespace
}  // namespace flexgen
