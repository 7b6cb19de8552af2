#include "engine/search/search_report.h"

#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "engine/core/format.h"

namespace flexgen {
namespace {

Bytes whole(double bytes) { return static_cast<Bytes>(std::llround(bytes)); }

nlohmann::json tier_json(const TierValues& v) {
  return {{"gpu", whole(v[Tier::kGpu])}, {"cpu", whole(v[Tier::kCpu])}, {"disk", whole(v[Tier::kDisk])}};
}

nlohmann::json shares_json(const TierValues& v) { return {v[Tier::kGpu], v[Tier::kCpu], v[Tier::kDisk]}; }

// A model argument as one shell word (quoted only when it needs it).
std::string shell_word(const std::string& s) {
  const bool plain = !s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                       "0123456789-_./:=+@%") == std::string::npos;
  if (plain) return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string fixed(double value, int decimals) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.*f", decimals, value);
  return buffer;
}

std::string percent_text(double share) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.4g%%", 100.0 * share);
  return buffer;
}

std::string placement_text(const char* what, const TierValues& v) {
  std::string out = what;
  for (Tier t : kAllTiers) {
    if (v[t] <= 0) continue;
    out += std::string(" ") + tier_name(t) + " " + percent_text(v[t]);
  }
  return out;
}

nlohmann::json candidate_json(const std::string& model, const Workload& workload, const TierValues& capacities,
                              const SearchCandidate& c) {
  const Estimate& e = c.estimate;
  return {{"policy", c.policy.to_json()},
          {"command", generate_command(model, workload, c, capacities)},
          {"throughput_tok_s", e.throughput_tok_s},
          {"decode_throughput_tok_s", e.decode_throughput_tok_s},
          {"prefill_s", e.prefill_s},
          {"decode_s", e.decode_s},
          {"total_s", e.total_s},
          {"lp_throughput_tok_s", c.lp_throughput_tok_s},
          {"step_estimate_tok_s", c.step_estimate_tok_s},
          {"peak_bytes", tier_json(e.memory.peak())},
          {"buffer_bytes", tier_json(e.memory.buffers)},
          {"gpu_workspace_bytes", {{"prefill", whole(e.memory.gpu_workspace.prefill)},
                                   {"decode", whole(e.memory.gpu_workspace.decode)}}},
          {"shares", {{"weights", shares_json(c.shares.weights_of(LayerKind::kDecoder))},
                      {"cache", shares_json(c.shares.cache)},
                      {"activations", tier_name(c.shares.activations)}}}};
}

}  // namespace

std::string generate_command(const std::string& model, const Workload& workload, const SearchCandidate& candidate,
                             const TierValues& capacities) {
  std::string out = "flexgen generate --model " + shell_word(model) + " --prompt-len " +
                    std::to_string(workload.prompt_len) + " --gen-len " + std::to_string(workload.gen_len) + " " +
                    candidate.policy.to_string();
  out += " --gpu-mem " + std::to_string(whole(capacities[Tier::kGpu]));
  out += " --cpu-mem " + std::to_string(whole(capacities[Tier::kCpu]));
  if (capacities[Tier::kDisk] > 0) out += " --disk-mem " + std::to_string(whole(capacities[Tier::kDisk]));
  return out;
}

nlohmann::json search_result_json(const std::string& model, const Workload& workload, const HardwareSpec& hardware,
                                  const TierValues& capacities, const SearchResult& result) {
  nlohmann::json candidates = nlohmann::json::array();
  for (const SearchCandidate& c : result.candidates) candidates.push_back(candidate_json(model, workload, capacities, c));
  return {{"model", model},
          {"hardware", hardware.name},
          {"workload", {{"prompt_len", workload.prompt_len}, {"gen_len", workload.gen_len}}},
          {"capacities", tier_json(capacities)},
          {"best", candidates.empty() ? nlohmann::json() : candidates[0]},
          {"candidates", candidates},
          {"search", {{"lp_solves", result.lp_solves}, {"lp_classes", result.lp_classes}, {"elapsed_s", result.elapsed_s}}}};
}

std::string search_result_text(const std::string& model, const Workload& workload, const HardwareSpec& hardware,
                               const TierValues& capacities, const SearchResult& result) {
  std::string out = "flexgen search: " + model + " on " + hardware.name + ", prompt " +
                    std::to_string(workload.prompt_len) + " tokens, generate " + std::to_string(workload.gen_len) + "\n";
  for (std::size_t i = 0; i < result.candidates.size(); ++i) {
    const SearchCandidate& c = result.candidates[i];
    const Policy& p = c.policy;
    const Estimate& e = c.estimate;
    out += i == 0 ? "\nbest policy:" : "\n#" + std::to_string(i + 1) + ":";
    out += " gpu batch size " + std::to_string(p.gpu_batch_size()) + " x " + std::to_string(p.num_gpu_batches()) +
           " gpu batches (block " + std::to_string(p.block_size()) + "); " +
           placement_text("weights", c.shares.weights_of(LayerKind::kDecoder)) + "; " +
           placement_text("cache", c.shares.cache) + "; activations " + tier_name(c.shares.activations);
    if (p.cpu_cache_compute()) out += "; cpu-cache-compute";
    if (p.compress_weight()) out += "; 4-bit weights";
    if (p.compress_cache()) out += "; 4-bit cache";
    out += "\n  predicted: " + fixed(e.throughput_tok_s, 3) + " token/s (prefill " + fixed(e.prefill_s, 2) +
           " s, decode " + fixed(e.decode_s, 2) + " s, decode " + fixed(e.decode_throughput_tok_s, 3) +
           " token/s); the per-step estimate: " + fixed(c.step_estimate_tok_s, 3) + " token/s; the LP before rounding: " +
           fixed(c.lp_throughput_tok_s, 3) + " token/s\n";
    const TierValues peak = e.memory.peak();
    out += "  peak memory:";
    for (Tier t : kAllTiers) {
      out += std::string(t == Tier::kGpu ? " " : ", ") + tier_name(t) + " " + format_bytes(whole(peak[t])) + " of " +
             format_bytes(whole(capacities[t]));
    }
    out += " (gpu includes a " + format_bytes(whole(e.memory.gpu_workspace.peak())) + " compute workspace)\n";
    out += "  " + generate_command(model, workload, c, capacities) + "\n";
  }
  out += "\nsearched " + std::to_string(result.lp_classes) + " placements (" + std::to_string(result.lp_solves) +
         " LP solves) in " + fixed(result.elapsed_s, 3) + " s\n";
  return out;
}

}  // namespace flexgen
