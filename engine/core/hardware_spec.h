#pragma once
// HardwareSpec: the one place hardware numbers live. Read from JSON files under
// experiments/hardware/ whose keys carry their units. The engine, the cost model, the LP and the
// simulator all read this type.
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "engine/core/units.h"

namespace flexgen {

struct HardwareSpec {
  std::string name;         // "t4-paper", "h100-sxm" ...
  std::string description;  // free text: where the numbers come from

  // Capacities.
  Bytes gpu_memory_bytes = 0;
  Bytes cpu_memory_bytes = 0;
  Bytes disk_bytes = 0;

  // Links.
  BytesPerSecond h2d_bytes_per_s = 0;          // CPU -> GPU
  BytesPerSecond d2h_bytes_per_s = 0;          // GPU -> CPU
  BytesPerSecond disk_read_bytes_per_s = 0;    // disk -> CPU
  BytesPerSecond disk_write_bytes_per_s = 0;   // CPU -> disk

  // Achieved compute rates (FlexGen fits separate prefill and decode rates).
  FlopsPerSecond gpu_gemm_prefill_flops_per_s = 0;
  FlopsPerSecond gpu_gemm_decode_flops_per_s = 0;
  FlopsPerSecond gpu_attention_prefill_flops_per_s = 0;
  FlopsPerSecond gpu_attention_decode_flops_per_s = 0;
  FlopsPerSecond cpu_attention_flops_per_s = 0;

  // Memory bandwidths of the two processors (for memory-bound terms).
  BytesPerSecond gpu_memory_bytes_per_s = 0;
  BytesPerSecond cpu_memory_bytes_per_s = 0;

  // Optional refinements of the engine's GPU compute, measured by `flexgen profile` (absent from a
  // file: 0, and the cost model leaves the term out, as FlexGen's model does):
  Seconds gpu_task_overhead_s = 0;            // fixed time of one GPU compute task (its kernel
                                              // launches and host work) beyond its GEMMs and attention
  BytesPerSecond gpu_dequant_bytes_per_s = 0; // 4-bit dequantization: dense fp16 bytes written per
                                              // second (0: priced as memory traffic instead)
  BytesPerSecond gpu_cache_dequant_bytes_per_s = 0;  // the same for the KV cache's rows (head_dim
                                              // values each, a different kernel shape); 0: the
                                              // weights' rate
  FlopsPerSecond cpu_cache_attention_flops_per_s = 0;  // delegated CPU attention over a 4-bit cache
                                              // (rows dequantized as read); 0: cpu_attention_flops_per_s
  FlopsPerSecond cpu_sparse_attention_flops_per_s = 0;  // delegated top-k attention over fp16 rows (FLOPs
                                              // as the schedule counts them: every key scored,
                                              // the kept values summed); 0: cpu_attention_flops_per_s
  // Fixed time of one small disk request beyond its bytes at the streaming rate (a cache append of
  // a few rows is an O_DIRECT read-modify-write of its edge blocks): the cost model adds it per
  // request of a disk task (engine/costmodel/task_cost.h). 0: bytes only.
  Seconds disk_read_latency_s = 0;
  Seconds disk_write_latency_s = 0;

  // Throws flexgen::Error "invalid hardware '<name>': field '<key>' ..." for an empty name or a
  // number that is not positive and finite.
  void validate() const;

  bool operator==(const HardwareSpec&) const = default;

  // The numeric fields' keys, in file order (the optional ones last).
  static std::vector<std::string> numeric_fields();
  // Whether `key` is one of the optional refinements (which take 0: the term left out).
  static bool optional_field(std::string_view key);

  // Strict parsing: every key above must be present (except description and the optional
  // refinements), no unknown keys. Byte
  // counts are positive whole numbers (16e9 is accepted as 16000000000), the rates positive finite
  // numbers; strings such as "16GiB" are not accepted in files (see units_parse.h for flags).
  // Throws flexgen::Error "<origin>: field '<key>': <what is wrong>" (one line).
  static HardwareSpec from_json(const nlohmann::json& json, const std::string& origin = "<json>");
  static HardwareSpec from_file(const std::filesystem::path& path);  // origin = the path
  nlohmann::json to_json() const;  // from_json(to_json()) == *this
};

}  // namespace flexgen
