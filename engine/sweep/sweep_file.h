#pragma once
// Sweep files (experiments/sweeps/*.json): data, not code. A sweep is a list of points, each a set
// of run parameters, run by `flexgen sweep` on the engine (this machine) or on the simulator (a
// hardware file), one results row per point (docs/experiments.md).
//
//   {
//     "name": "ablation-t4",                       required; names the rows
//     "description": "...",                        optional
//     "target": "simulator" | "engine",            required
//     "hardware": "t4-paper",                      a hardware file or name (experiments/hardware/);
//                                                  required for the simulator, optional for the
//                                                  engine (then the spec its predictions use)
//     "output": "results/sweeps/ablation-t4.jsonl",  default results/sweeps/<name>.jsonl
//     "timeout_s": 600,                            engine: per point (default none)
//     "offload_dir": "/ssd/flexgen",               engine: generate's --offload-dir (default its own)
//     "base": { parameters },                      shared by every point
//     "grid": [ { "axis": [values], ... }, ... ]   each block: the cartesian product of its axes
//   }                                              (first axis outermost); the blocks are joined
//
// An axis is a parameter name with a list of values, or any other name with a list of objects,
// each setting several parameters together (a named variant). A block's values override `base`,
// and a later axis of a block overrides what an earlier one set (a policy axis, then an ablation
// axis that changes one switch of it). Points that come out identical (label aside) are run once.
//
// Parameters (defaults in brackets):
//   label (string [""]), model (required), prompt_len [512], gen_len [32],
//   schedule ("zig-zag" | "row-by-row") [zig-zag], policy ("fixed" | "search") [fixed],
//   gpu_batch_size [1], num_gpu_batches [1], percent (six numbers) [100 0 100 0 100 0],
//   overlap [true], pin_weight [true], cpu_cache_compute [false], compress_weight [false],
//   compress_cache [false], attn_sparsity [1], allow_disk (search only) [true],
//   hardware [the file's], "hw.<field>" (a hardware override: a number, or a size string for the
//   *_bytes fields), gpu_mem / cpu_mem / disk_mem (tier capacities, size strings) [the
//   hardware's for the simulator; unlimited for the engine], backend (engine: auto | cuda | host)
//   [auto], seed [0].
// With policy "search", gpu_batch_size, num_gpu_batches and cpu_cache_compute fix that part of
// the searched policy when given (null or absent: searched), percent must be absent, and the
// compression and sparsity switches are fixed as given.
//
// Parsing is pure (reads no other file); check_sweep_inputs() then resolves the models and
// hardware files a sweep names.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/core/hardware_spec.h"
#include "engine/core/policy.h"
#include "engine/runtime/schedule.h"

namespace flexgen {

enum class SweepTarget : std::uint8_t { kEngine, kSimulator };
const char* sweep_target_name(SweepTarget target);  // "engine", "simulator"

// One point's parameters, typed. Made from the resolved JSON by point_params().
struct PointParams {
  std::string label;
  std::string model;
  std::int64_t prompt_len = 512;
  std::int64_t gen_len = 32;
  ScheduleKind schedule = ScheduleKind::kZigZag;
  bool search = false;
  std::optional<std::int64_t> gpu_batch_size;   // always set for a fixed policy
  std::optional<std::int64_t> num_gpu_batches;  // always set for a fixed policy
  std::optional<std::array<double, 6>> percent; // set for a fixed policy only
  bool overlap = true;
  bool pin_weight = true;
  std::optional<bool> cpu_cache_compute;        // always set for a fixed policy
  bool compress_weight = false;
  bool compress_cache = false;
  double attn_sparsity = 1.0;
  bool allow_disk = true;
  std::string hardware;                                            // empty: none (engine only)
  std::vector<std::pair<std::string, nlohmann::json>> hw_overrides;  // field -> number or size string
  std::optional<std::string> gpu_mem, cpu_mem, disk_mem;
  std::string backend = "auto";
  std::uint64_t seed = 0;

  // The fixed policy's config (policy "fixed" only).
  PolicyConfig policy_config() const;
};

struct SweepPoint {
  std::string id;          // 16 hex digits: a hash of the target and every parameter but the label
  nlohmann::json params;   // every parameter, defaults filled in (keys sorted)
  PointParams typed;
};

struct Sweep {
  std::string name;
  std::string description;
  SweepTarget target = SweepTarget::kSimulator;
  std::string hardware;            // the file's default hardware (may be empty for the engine)
  std::filesystem::path output;    // as written (relative paths are relative to the working dir)
  double timeout_s = 0;            // engine: per point; 0: none
  std::string offload_dir;         // engine: generate's --offload-dir; empty: its default
  std::vector<SweepPoint> points;  // in grid order, duplicates removed
};

// Parses a sweep (parsed with keys in file order: the order of a block's axes is the order of its
// points). Throws flexgen::Error "<origin>: ..." naming the key, the grid block and axis, or
// the point (by its number and label) for anything wrong: unknown keys, wrong types, values out of
// range, an impossible fixed policy, a parameter set twice, an empty grid.
Sweep parse_sweep(const nlohmann::ordered_json& json, const std::string& origin);
Sweep read_sweep_file(const std::filesystem::path& path);

// Typed view of a point's resolved parameters (as parse_sweep made them; asserts on others).
PointParams point_params(const nlohmann::json& params);

// The point id: 16 hex digits of FNV-1a 64 over the target name and the parameters' JSON without
// the label.
std::string sweep_point_id(SweepTarget target, const nlohmann::json& params);

// Applies hardware overrides: a number, or for *_bytes fields also a size string ("24GiB").
// Unknown or non-numeric fields are refused: "<origin><key>: ..." (origin "--set " for the
// command line, "hw." in sweeps). The name gets
// " (overridden)" when anything was applied.
HardwareSpec with_hardware_overrides(const HardwareSpec& base,
                                     const std::vector<std::pair<std::string, nlohmann::json>>& overrides,
                                     const std::string& origin);

// Resolves every model and hardware file the sweep names and applies each point's overrides,
// so that a sweep with a missing file fails before its first point. Throws flexgen::Error.
void check_sweep_inputs(const Sweep& sweep, const std::string& origin);

}  // namespace flexgen
