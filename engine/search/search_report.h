#pragma once
// How `flexgen search` reports its result: a ready `flexgen generate` command line, a short text
// summary, and one JSON object for scripts.
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "engine/core/hardware_spec.h"
#include "engine/core/workload.h"
#include "engine/search/policy_search.h"

namespace flexgen {

// "flexgen generate --model M --prompt-len S --gen-len N <policy flags> --gpu-mem B --cpu-mem B
// --disk-mem B": the capacities the search filled become the runtime's budgets (no --disk-mem
// and nothing on disk when the search had no disk).
std::string generate_command(const std::string& model, const Workload& workload, const SearchCandidate& candidate,
                             const TierValues& capacities);

// {"model", "hardware", "workload": {"prompt_len", "gen_len"}, "capacities": {...},
//  "best": <candidate>, "candidates": [<candidate>...],
//  "search": {"lp_solves", "lp_classes", "elapsed_s"}}
// with <candidate> = {"policy": Policy::to_json(), "command", "throughput_tok_s",
//  "decode_throughput_tok_s", "prefill_s", "decode_s", "total_s", "lp_throughput_tok_s",
//  "peak_bytes": {"gpu", "cpu", "disk"}, "buffer_bytes": {...}, "gpu_workspace_bytes":
//  {"prefill", "decode"}, "shares": {"weights": [gpu, cpu, disk] (decoder layers), "cache": [...],
//  "activations": "gpu" | "cpu" | "disk"}}.
nlohmann::json search_result_json(const std::string& model, const Workload& workload, const HardwareSpec& hardware,
                                  const TierValues& capacities, const SearchResult& result);

// The human-readable summary (several lines, ending with a newline).
std::string search_result_text(const std::string& model, const Workload& workload, const HardwareSpec& hardware,
                               const TierValues& capacities, const SearchResult& result);

}  // namespace flexgen
