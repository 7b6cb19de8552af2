#pragma once
// Policy: how a run is laid out. FlexGen's fields: gpu batch size, number of gpu batches, the
// placement of weights / KV cache / activations over GPU, CPU and disk (the `--percent` six
// numbers), and the switches. A validated value type: Policy::create checks every invariant and
// throws flexgen::Error with a clear message for an impossible one.
#include <array>
#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace flexgen {

struct Placement {
  double gpu_percent = 100.0;
  double cpu_percent = 0.0;
  double disk_percent() const { return 100.0 - gpu_percent - cpu_percent; }
};

// Everything a user may set; Policy::create validates it.
struct PolicyConfig {
  std::int64_t gpu_batch_size = 1;
  std::int64_t num_gpu_batches = 1;
  Placement weights;      // wg, wc
  Placement cache;        // cg, cc
  Placement activations;  // hg, hc
  bool overlap = true;
  bool pin_weight = true;
  bool cpu_cache_compute = false;  // CPU delegation of decode attention
  bool compress_weight = false;    // 4-bit group-wise
  bool compress_cache = false;
  double attn_sparsity = 1.0;      // fraction of cached positions kept, in (0, 1]
  int compress_bits = 4;
  int compress_group_size = 64;

  // Sets weights/cache/activations from FlexGen's six numbers "wg wc cg cc hg hc".
  void set_percent(const std::array<double, 6>& percent);
};

class Policy {
 public:
  static Policy create(const PolicyConfig& config);  // throws flexgen::Error

  const PolicyConfig& config() const { return config_; }
  std::int64_t gpu_batch_size() const { return config_.gpu_batch_size; }
  std::int64_t num_gpu_batches() const { return config_.num_gpu_batches; }
  std::int64_t block_size() const { return config_.gpu_batch_size * config_.num_gpu_batches; }
  const Placement& weights() const { return config_.weights; }
  const Placement& cache() const { return config_.cache; }
  const Placement& activations() const { return config_.activations; }
  bool overlap() const { return config_.overlap; }
  bool pin_weight() const { return config_.pin_weight; }
  bool cpu_cache_compute() const { return config_.cpu_cache_compute; }
  bool compress_weight() const { return config_.compress_weight; }
  bool compress_cache() const { return config_.compress_cache; }
  double attn_sparsity() const { return config_.attn_sparsity; }

  std::array<double, 6> percent() const;  // "wg wc cg cc hg hc"
  std::string to_string() const;          // one line, FlexGen-style flags
  nlohmann::json to_json() const;

 private:
  explicit Policy(PolicyConfig config) : config_(config) {}
  PolicyConfig config_;
};

}  // namespace flexgen
