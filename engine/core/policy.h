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

// Percent of a kind of data on the GPU and the CPU; the rest is on disk.
struct Placement {
  double gpu_percent = 100.0;
  double cpu_percent = 0.0;
  double disk_percent() const { return 100.0 - gpu_percent - cpu_percent; }
  bool operator==(const Placement&) const = default;
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
  bool operator==(const PolicyConfig&) const = default;
};

class Policy {
 public:
  // Checks: gpu_batch_size and num_gpu_batches >= 1 (and their product fits 64 bits), each percent
  // in [0, 100], gpu + cpu <= 100 for weights, cache and activations, attn_sparsity in (0, 1], and
  // 4-bit compression in groups of 64 (the only supported format). Throws flexgen::Error with a
  // message such as "invalid policy: weight placement gpu 80% + cpu 30% exceeds 100%".
  static Policy create(const PolicyConfig& config);

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

  int compress_bits() const { return config_.compress_bits; }
  int compress_group_size() const { return config_.compress_group_size; }

  std::array<double, 6> percent() const;  // "wg wc cg cc hg hc"
  // One line of FlexGen-style flags, e.g.
  //   --gpu-batch-size 48 --num-gpu-batches 3 --percent 20 80 0 100 0 100 --cpu-cache-compute
  // followed by only the switches that differ from the defaults: --overlap false,
  // --pin-weight false, --cpu-cache-compute, --compress-weight, --compress-cache,
  // --attn-sparsity <fraction>.
  std::string to_string() const;

  // For results rows: {"gpu_batch_size", "num_gpu_batches", "percent": [six numbers], "overlap",
  // "pin_weight", "cpu_cache_compute", "compress_weight", "compress_cache", "attn_sparsity",
  // "compress_bits", "compress_group_size"}.
  nlohmann::json to_json() const;
  // Strict: gpu_batch_size, num_gpu_batches and percent are required, the other keys optional
  // (PolicyConfig's defaults), unknown keys rejected; then create() validates. Throws
  // flexgen::Error "<origin>: ...".
  static Policy from_json(const nlohmann::json& json, const std::string& origin = "policy");

  bool operator==(const Policy&) const = default;

 private:
  explicit Policy(PolicyConfig config) : config_(config) {}
  PolicyConfig config_;
};

}  // namespace flexgen
