// The block schedule against closed forms worked out from the model's shapes.
#include "engine/runtime/schedule.h"

#include <set>

#include <gtest/gtest.h>

#include "engine/runtime/plan.h"

namespace flexgen {
namespace {

// A tiny OPT, float32: h = 16, 4 heads (head_dim 4), ffn 64, vocab 40, 64 positions, 2 layers.
ModelSpec tiny_spec() {
  ModelSpec s;
  s.name = "tiny";
  s.num_layers = 2;
  s.hidden_size = 16;
  s.num_heads = 4;
  s.ffn_dim = 64;
  s.vocab_size = 40;
  s.max_positions = 64;
  s.dtype = DType::kF32;
  return s;
}

// Bytes of each schedule layer's weights in float32, by hand:
//   embedding: tokens 40*16 + positions 66*16 = 1696 values
//   decoder:   4 * (16*16 + 16) + (16*64 + 64) + (64*16 + 16) + 2 * 2 * 16 = 1088 + 1088 + 1040 + 64
//            = 3280 values
//   output:    final LayerNorm 32 + LM head (its own copy of the token embedding) 640 = 672 values
constexpr Bytes kEmbeddingBytes = 1696 * 4;
constexpr Bytes kDecoderBytes = 3280 * 4;
constexpr Bytes kOutputBytes = 672 * 4;
constexpr Bytes kAllWeightBytes = kEmbeddingBytes + 2 * kDecoderBytes + kOutputBytes;

Plan make(std::array<double, 6> percent, std::int64_t gbs, std::int64_t ngb, std::int64_t prompt,
          std::int64_t gen, bool overlap = true) {
  PolicyConfig c;
  c.gpu_batch_size = gbs;
  c.num_gpu_batches = ngb;
  c.set_percent(percent);
  c.overlap = overlap;
  Workload w;
  w.prompt_len = prompt;
  w.gen_len = gen;
  w.num_sequences = gbs * ngb;
  return make_plan(tiny_spec(), w, Policy::create(c));
}

Bytes bytes_of(const Schedule& s, TaskKind kind, Bytes LinkBytes::*field) {
  Bytes total = 0;
  for (const Task& t : s.tasks) {
    if (t.kind == kind) total += t.bytes.*field;
  }
  return total;
}

TEST(Plan, WeightBytesPerLayerMatchTheHandCount) {
  const Plan p = make({0, 100, 100, 0, 100, 0}, 1, 1, 4, 2);
  ASSERT_EQ(p.layers.size(), 4u);
  EXPECT_EQ(p.layers[0].home_bytes[Tier::kCpu], kEmbeddingBytes);
  EXPECT_EQ(p.layers[1].home_bytes[Tier::kCpu], kDecoderBytes);
  EXPECT_EQ(p.layers[3].home_bytes[Tier::kCpu], kOutputBytes);
  EXPECT_EQ(p.cache.units, 4);
  EXPECT_EQ(p.cache.row_bytes, 4 * 4);
  EXPECT_EQ(p.cache.capacity, 4 + 2 - 1);
}

// FlexGen's midpoint rule with 50% on the GPU and 50% on the CPU. FlexGen treats an OPT decoder
// layer as two layers, self-attention and MLP, and places each on its own. In values:
//   attention: q, k, v, out weights 256 and biases 16 each, LayerNorm 16 + 16; 1120 in all.
//     Midpoints: q.w 128/1120 = 11%, q.b 264/1120 = 24%, k.w 400/1120 = 36%, k.b 536/1120 = 48%
//     (CPU), v.w 672/1120 = 60% (GPU) ... so the CPU holds 256 + 16 + 256 + 16 = 544.
//   MLP: fc1 1024 + 64, fc2 1024 + 16, LayerNorm 16 + 16; 2160 in all.
//     Midpoints: fc1.w 512/2160 = 24%, fc1.b 1056/2160 = 49% (CPU), fc2.w 1600/2160 = 74% (GPU);
//     the CPU holds 1088.
TEST(Plan, MidpointRuleSplitsALayerLikeFlexGen) {
  const Plan p = make({50, 50, 100, 0, 100, 0}, 1, 1, 4, 2);
  EXPECT_EQ(p.layers[1].home_bytes[Tier::kCpu], (544 + 1088) * 4);
  EXPECT_EQ(p.layers[1].home_bytes[Tier::kGpu], (3280 - 544 - 1088) * 4);
  EXPECT_EQ(p.layers[1].home_bytes[Tier::kDisk], 0);
}

TEST(Schedule, DependenciesPointBackwardAndResourcesMatchKinds) {
  for (auto kind : {ScheduleKind::kZigZag, ScheduleKind::kRowByRow}) {
    const Plan p = make({30, 30, 40, 30, 0, 0}, 2, 3, 5, 4);
    const Schedule s = make_schedule(p, kind);
    ASSERT_FALSE(s.tasks.empty());
    for (std::size_t i = 0; i < s.tasks.size(); ++i) {
      for (TaskId d : s.tasks[i].deps) {
        EXPECT_GE(d, 0);
        EXPECT_LT(static_cast<std::size_t>(d), i) << task_kind_name(s.tasks[i].kind);
      }
    }
    // Every visit computes exactly once: (layers + 2) x gen_len x batches.
    EXPECT_EQ(s.count(TaskKind::kCompute), 4 * 4 * 3);
    EXPECT_EQ(s.count(TaskKind::kComputePost), 2 * 4 * 3);
  }
}

// The paper's point: zig-zag loads each layer's weights once per block, row-by-row once per batch.
TEST(Schedule, WeightTrafficClosedForms) {
  const std::int64_t gen = 5, ngb = 4;
  const Plan p = make({0, 100, 100, 0, 100, 0}, 2, ngb, 6, gen);
  const Schedule zz = make_schedule(p, ScheduleKind::kZigZag);
  const Schedule rr = make_schedule(p, ScheduleKind::kRowByRow);
  EXPECT_EQ(bytes_of(zz, TaskKind::kWeightLoad, &LinkBytes::h2d), gen * kAllWeightBytes);
  EXPECT_EQ(bytes_of(rr, TaskKind::kWeightLoad, &LinkBytes::h2d), ngb * gen * kAllWeightBytes);
  EXPECT_EQ(zz.total_bytes().h2d * ngb, rr.total_bytes().h2d);
  EXPECT_EQ(zz.total_bytes().disk_read, 0);

  // Weights on disk: each load is a disk read first, then a host-to-device copy.
  const Plan d = make({0, 0, 100, 0, 100, 0}, 2, ngb, 6, gen);
  const Schedule dz = make_schedule(d, ScheduleKind::kZigZag);
  EXPECT_EQ(dz.total_bytes().disk_read, gen * kAllWeightBytes);
  EXPECT_EQ(dz.total_bytes().h2d, gen * kAllWeightBytes);
}

// KV cache on the CPU: decode step i loads the prompt and i - 1 generated positions of key and
// value of every unit; every step but the last stores its new positions.
TEST(Schedule, CacheTrafficClosedForms) {
  const std::int64_t gbs = 2, ngb = 3, prompt = 6, gen = 4, L = 2;
  const Plan p = make({100, 0, 0, 100, 100, 0}, gbs, ngb, prompt, gen);
  const Bytes row = 4 * 4;             // head_dim 4, float32
  const std::int64_t units = gbs * 4;  // sequences x heads
  Bytes loads = 0;
  for (std::int64_t i = 1; i < gen; ++i) loads += 2 * units * (prompt + i - 1) * row;
  const Bytes stores = 2 * units * (prompt + (gen - 2)) * row;
  const Schedule s = make_schedule(p, ScheduleKind::kZigZag);
  EXPECT_EQ(bytes_of(s, TaskKind::kCacheLoad, &LinkBytes::h2d), L * ngb * loads);
  EXPECT_EQ(bytes_of(s, TaskKind::kCacheStore, &LinkBytes::d2h), L * ngb * stores);
  EXPECT_EQ(s.total_bytes().h2d, L * ngb * loads);  // weights and activations stay on the GPU

  // Half the units on disk: the disk side reads and writes exactly its half.
  const Plan h = make({100, 0, 0, 50, 100, 0}, gbs, ngb, prompt, gen);
  const Schedule hs = make_schedule(h, ScheduleKind::kZigZag);
  EXPECT_EQ(hs.total_bytes().disk_read, L * ngb * loads / 2);
  EXPECT_EQ(hs.total_bytes().disk_write, L * ngb * stores / 2);
  EXPECT_EQ(hs.total_bytes().h2d, L * ngb * loads);
}

// Activations on the CPU: the hidden state of each batch leaves the GPU after every layer but the
// output layer and comes back before every layer but the embedding.
TEST(Schedule, ActivationTrafficClosedForm) {
  const std::int64_t gbs = 2, ngb = 2, prompt = 6, gen = 3, L = 2, h = 16;
  const Plan p = make({100, 0, 100, 0, 0, 100}, gbs, ngb, prompt, gen);
  const Schedule s = make_schedule(p, ScheduleKind::kZigZag);
  const Bytes per_step_tokens = prompt + (gen - 1);  // prefill carries prompt tokens, decode 1
  const Bytes expected = (L + 1) * ngb * gbs * h * 4 * per_step_tokens;
  EXPECT_EQ(bytes_of(s, TaskKind::kActStore, &LinkBytes::d2h), expected);
  EXPECT_EQ(bytes_of(s, TaskKind::kActLoad, &LinkBytes::h2d), expected);
}

TEST(Schedule, SparseAttentionMovesKeysAndKeptValuesOnly) {
  const std::int64_t gbs = 1, ngb = 1, prompt = 10, gen = 3;
  PolicyConfig c;
  c.gpu_batch_size = gbs;
  c.num_gpu_batches = ngb;
  c.set_percent({100, 0, 0, 100, 100, 0});
  c.attn_sparsity = 0.5;
  Workload w;
  w.prompt_len = prompt;
  w.gen_len = gen;
  w.num_sequences = 1;
  const Schedule s = make_schedule(make_plan(tiny_spec(), w, Policy::create(c)), ScheduleKind::kZigZag);
  const Bytes row = 16;
  // Step i: keys of prompt + i - 1 positions, then floor(0.5 * (prompt + i - 1)) value rows.
  Bytes keys = 0, values = 0;
  for (std::int64_t i = 1; i < gen; ++i) {
    keys += 4 * (prompt + i - 1) * row;
    values += 4 * ((prompt + i - 1) / 2) * row;
  }
  EXPECT_EQ(bytes_of(s, TaskKind::kCacheLoad, &LinkBytes::h2d), 2 * keys);
  EXPECT_EQ(bytes_of(s, TaskKind::kValueGather, &LinkBytes::h2d), 2 * values);
}

TEST(Schedule, DelegationMovesQueryAndNewRowsNotTheCache) {
  PolicyConfig c;
  c.gpu_batch_size = 2;
  c.set_percent({100, 0, 0, 100, 100, 0});
  c.cpu_cache_compute = true;
  Workload w;
  w.prompt_len = 8;
  w.gen_len = 3;
  w.num_sequences = 2;
  const Schedule s = make_schedule(make_plan(tiny_spec(), w, Policy::create(c)), ScheduleKind::kZigZag);
  // Decode never loads the cache; it sends q, k, v (3 x 8 units x 16 bytes) and gets 8 x 16 back.
  EXPECT_EQ(bytes_of(s, TaskKind::kCacheLoad, &LinkBytes::h2d), 0);
  EXPECT_EQ(s.count(TaskKind::kCpuAttention), 2 * 2);
  EXPECT_EQ(bytes_of(s, TaskKind::kDelegateStore, &LinkBytes::d2h), 2 * 2 * 3 * 8 * 16);
  EXPECT_EQ(bytes_of(s, TaskKind::kDelegateLoad, &LinkBytes::h2d), 2 * 2 * 8 * 16);
}

}  // namespace
}  // namespace flexgen
