#pragma once
// PolicySearch: the best policy for a model, a workload and a machine, after FlexGen's LP (paper
// section 4.2). For each gpu batch size, number of gpu batches, activation tier and choice of CPU
// delegation, an LP over the placement shares of weights and KV cache minimises the run's time
// under the memory model's capacity constraints; the outer search walks the batch sizes and batch
// counts. The best LP solutions are then made real — whole tensors by the midpoint rule, whole
// cache units — and priced again with the per-task cost model on the actual plan and schedule;
// that is what is reported.
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "engine/core/hardware_spec.h"
#include "engine/core/model_spec.h"
#include "engine/core/policy.h"
#include "engine/core/workload.h"
#include "engine/costmodel/estimate.h"
#include "engine/costmodel/shares.h"

namespace flexgen {

enum class SearchChoice : std::uint8_t { kSearch, kOn, kOff };

struct SearchOptions {
  std::optional<std::int64_t> gpu_batch_size;   // fix the gpu batch size
  std::optional<std::int64_t> num_gpu_batches;  // fix the number of gpu batches
  bool compress_weight = false;                 // fix 4-bit weights on (off when false)
  bool compress_cache = false;                  // fix the 4-bit cache on (off when false)
  SearchChoice cpu_cache_compute = SearchChoice::kSearch;
  bool allow_disk = true;                       // false: nothing on disk
  double attn_sparsity = 1.0;                   // fixed
  int top = 1;                                  // how many policies to return
  std::int64_t max_gpu_batch_size = 4096;       // where the batch-size walk stops at the latest
  // Prices a realised candidate again (its time figures; the memory stays the cost model's): the
  // commands pass the simulator's replay of the real schedule (simulator/predict.h), which follows
  // the engine's dependencies where the per-step estimate assumes every resource overlaps. The
  // best `reprice_candidates` by the estimate are priced so and ranked by it.
  std::function<Estimate(const Policy&)> reprice;
  int reprice_candidates = 4;
};

struct SearchCandidate {
  Policy policy;
  Estimate estimate;               // the per-task cost model on the real plan and schedule (or
                                   // SearchOptions::reprice's figures when given)
  double lp_seconds = 0;           // the LP's run time for this class before rounding
  double lp_throughput_tok_s = 0;  // block x gen_len / lp_seconds
  PlacementShares lp_shares;       // the LP's placement before rounding
  PlacementShares shares;          // the real plan's effective placement
  double step_estimate_tok_s = 0;  // the per-step estimate's throughput (before any reprice)
};

struct SearchResult {
  std::vector<SearchCandidate> candidates;  // best first, at most options.top
  std::int64_t lp_solves = 0;
  std::int64_t lp_classes = 0;  // (gpu batch size, batches, activation tier, delegation) LPs solved
  double elapsed_s = 0;
};

// The capacities the search fills: the hardware file's, with no disk when !allow_disk.
TierValues search_capacities(const HardwareSpec& hardware, const SearchOptions& options);

// Searches. `workload` gives prompt_len and gen_len (num_sequences and sampling are ignored).
// Throws flexgen::Error with one clear line when nothing fits: the model and its cache larger than
// all tiers together (by how much), the GPU too small for the slots and workspace of the smallest
// batch, or no placement found.
SearchResult search_policy(const ModelSpec& spec, const Workload& workload, const HardwareSpec& hardware,
                           const SearchOptions& options);

}  // namespace flexgen
