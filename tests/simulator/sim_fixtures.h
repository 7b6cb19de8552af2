#pragma once
// Shared by the simulator tests: the tiny OPT of tests/engine/runtime/schedule_test.cc and plans
// over it, and small duration models whose values are easy to add up by hand.
#include <array>
#include <cstdint>

#include "engine/runtime/plan.h"
#include "engine/runtime/schedule.h"
#include "simulator/duration_model.h"

namespace flexgen::simtest {

// h = 16, 4 heads (head_dim 4), ffn 64, vocab 40, 64 positions, float32, `layers` decoder layers.
inline ModelSpec tiny_spec(std::int64_t layers = 2) {
  ModelSpec s;
  s.name = "tiny";
  s.num_layers = layers;
  s.hidden_size = 16;
  s.num_heads = 4;
  s.ffn_dim = 64;
  s.vocab_size = 40;
  s.max_positions = 64;
  s.dtype = DType::kF32;
  return s;
}

// Weight bytes of each schedule layer of the tiny model in float32, counted by hand:
//   embedding: tokens 40*16 + positions 66*16 = 1696 values
//   decoder:   4 * (16*16 + 16) + (16*64 + 64) + (64*16 + 16) + 2 * 2 * 16 = 3280 values
//   output:    final LayerNorm 32 + LM head (a copy of the token embedding) 640 = 672 values
constexpr Bytes kEmbeddingBytes = 1696 * 4;
constexpr Bytes kDecoderBytes = 3280 * 4;
constexpr Bytes kOutputBytes = 672 * 4;

struct PlanArgs {
  std::array<double, 6> percent{100, 0, 100, 0, 100, 0};
  std::int64_t gbs = 1, ngb = 1, prompt = 4, gen = 2, layers = 2;
  bool overlap = true;
  bool cpu_cache_compute = false;
  double attn_sparsity = 1.0;
};

inline Plan tiny_plan(const PlanArgs& a) {
  PolicyConfig c;
  c.gpu_batch_size = a.gbs;
  c.num_gpu_batches = a.ngb;
  c.set_percent(a.percent);
  c.overlap = a.overlap;
  c.cpu_cache_compute = a.cpu_cache_compute;
  c.attn_sparsity = a.attn_sparsity;
  Workload w;
  w.prompt_len = a.prompt;
  w.gen_len = a.gen;
  w.num_sequences = a.gbs * a.ngb;
  return make_plan(tiny_spec(a.layers), w, Policy::create(c));
}

inline Bytes task_bytes(const Task& t) { return t.bytes.h2d + t.bytes.d2h + t.bytes.disk_read + t.bytes.disk_write; }

// Link tasks take `ns_per_byte` per byte; GPU tasks `gpu` (or `post` for compute_post), CPU tasks
// `cpu`.
class LinearModel : public DurationModel {
 public:
  LinearModel(Nanoseconds ns_per_byte, Nanoseconds gpu, Nanoseconds post, Nanoseconds cpu)
      : ns_per_byte_(ns_per_byte), gpu_(gpu), post_(post), cpu_(cpu) {}
  Nanoseconds duration(const Task& t) const override {
    switch (t.resource()) {
      case Resource::kGpuCompute: return t.kind == TaskKind::kComputePost ? post_ : gpu_;
      case Resource::kCpuCompute: return cpu_;
      default: return ns_per_byte_ * task_bytes(t);
    }
  }

 private:
  Nanoseconds ns_per_byte_, gpu_, post_, cpu_;
};

// A different, irregular duration per task (a hash of its fields), for order-only checks.
class HashModel : public DurationModel {
 public:
  Nanoseconds duration(const Task& t) const override {
    std::uint64_t h = static_cast<std::uint64_t>(t.kind) * 0x9e3779b97f4a7c15ull;
    h ^= static_cast<std::uint64_t>(t.token * 131 + t.layer * 17 + t.batch + 7) * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 31;
    return static_cast<Nanoseconds>(h % 997) + static_cast<Nanoseconds>(task_bytes(t) % 89);
  }
};

}  // namespace flexgen::simtest
