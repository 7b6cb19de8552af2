#pragma once
// The offloading runtime as the commands see it: one interface, two backends. The host backend
// (host_runtime.h) runs everything in host memory and is the oracle; the CUDA backend
// (engine/cuda/cuda_runtime.h) runs the same Plan and Schedule on a GPU. Both take the weights
// from a WeightsSource: a model's float32 tensors, or seeded dummy values.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/core/policy.h"
#include "engine/model/llama_weights.h"
#include "engine/model/opt_weights.h"
#include "engine/runtime/host_runtime.h"

namespace flexgen {

enum class Backend : std::uint8_t { kHost, kCuda };
const char* backend_name(Backend backend);  // "host", "cuda"

// Whether this build has the CUDA backend and a CUDA device is present.
bool cuda_backend_available();

// "host", "cuda", or "auto" (the CUDA backend when available, else the host backend). Throws
// flexgen::Error for anything else, and for "cuda" when it is not available (saying why).
Backend parse_backend(const std::string& text);

// Where the weights come from: `weights` for an OPT plan, `llama_weights` for a LLaMA plan. With
// the family's pointer null, every tensor is a seeded dummy: the host backend makes
// make_dummy_opt_weights / make_dummy_llama_weights(spec, dummy_seed) (4 bytes per parameter of
// host memory); the CUDA backend writes dummy values of the same distribution straight into each
// tensor's home in its stored format, with no float32 copy of the model.
struct WeightsSource {
  const OptWeights* weights = nullptr;
  std::uint64_t dummy_seed = 0;
  const LlamaWeights* llama_weights = nullptr;
};

class Runtime {
 public:
  virtual ~Runtime() = default;
  // Runs one block (see HostRuntime::generate) of the given shape (BlockShape: the plan's by
  // default; a smaller one reuses the same buffers). Throws flexgen::Error for a shape larger
  // than the plan's.
  virtual RunReport generate(const std::vector<std::vector<std::int32_t>>& prompts,
                             const SamplingConfig& sampling, std::optional<std::int32_t> stop_token,
                             const BlockShape& shape = {}) = 0;
  virtual const Schedule& schedule() const = 0;
  virtual const MemoryPlan& memory_plan() const = 0;
  virtual Backend backend() const = 0;
};

// Builds the backend's runtime for the plan: checks budgets (flexgen::Error before allocating
// anything), allocates every buffer and places the weights.
std::unique_ptr<Runtime> make_runtime(Backend backend, const Plan& plan, const WeightsSource& weights,
                                      const RuntimeOptions& options);

}  // namespace flexgen
