#pragma once
// What every command that runs the engine shares (generate, batch, sweep): the memory-tier and
// backend flags, loading a model (real or dummy), dummy prompts, and the JSON of a run's report.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <boost/program_options/options_description.hpp>
#include <nlohmann/json.hpp>

#include "engine/core/model_spec.h"
#include "engine/model/llama_weights.h"
#include "engine/model/opt_weights.h"
#include "engine/runtime/runtime.h"
#include "engine/text/tokenizer.h"

namespace flexgen::cli {

struct TierFlags {
  std::string hardware, gpu_mem, cpu_mem, disk_mem;
  std::string offload_dir;  // default: <temp>/flexgen-offload
  std::string schedule = "zig-zag";
  std::string backend = "auto";
};

// --hardware --gpu-mem --cpu-mem --disk-mem --offload-dir --schedule --backend
boost::program_options::options_description tier_options(TierFlags& flags);

// Budgets (unlimited unless --hardware or a --*-mem flag says otherwise), offload dir, schedule.
RuntimeOptions runtime_options_from(const TierFlags& flags);

struct LoadedModel {
  ModelSpec spec;       // dtype f16 on the CUDA backend (it stores and computes in fp16)
  OptWeights weights;   // OPT; empty for dummy weights
  LlamaWeights llama_weights;  // LLaMA; empty for dummy weights
  std::shared_ptr<const Tokenizer> tokenizer;  // null when the model has none (dummy weights, ...)
  std::string tokenizer_unavailable;           // then: why (one line)
  bool dummy = false;
  std::uint64_t seed = 0;
  WeightsSource source() const {
    const bool llama = spec.family == ModelFamily::kLlama;
    return {dummy || llama ? nullptr : &weights, seed, dummy || !llama ? nullptr : &llama_weights};
  }
};

// MODEL is an HF model directory (OPT or LLaMA, with its tokenizer files) or a name from the
// built-in table (dummy weights, seeded by `seed`). Refuses dummy weights the host backend cannot hold as float32.
LoadedModel load_model(const std::string& model, std::uint64_t seed, Backend backend);

// A dummy prompt: the model's start token, then seeded ids from the vocabulary. Throws
// flexgen::Error for a length beyond the model's positions (before building anything).
std::vector<std::int32_t> dummy_prompt(const ModelSpec& spec, std::int64_t length, std::uint64_t seed,
                                       std::int64_t index);

// The device a backend runs on: the first GPU's name (CUDA), or the host processor.
std::string device_name(Backend backend);

nlohmann::json link_json(const LinkBytes& l);
nlohmann::json tier_json(const TierBytes& t);
// Timings, throughput, peak memory and bytes moved of a run.
nlohmann::json report_json(const RunReport& report);
// With task timings kept: per task kind, the number of tasks and their summed busy seconds.
nlohmann::json task_time_json(const RunReport& report, const Schedule& schedule);
// With op timings kept (CUDA backend): per phase (prefill, decode) the phase's wall seconds, the
// compute stream's busy seconds (the ops' summed event times), the idle seconds and fraction
// (wall - busy: launch gaps, host work, waits), and per op kind its calls and busy seconds.
nlohmann::json op_time_json(const RunReport& report);

}  // namespace flexgen::cli
