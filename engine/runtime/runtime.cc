#include "engine/runtime/runtime.h"

#include "engine/core/error.h"
#include "engine/cuda/device_info.h"
#ifdef FLEXGEN_HAVE_CUDA
#include "engine/cuda/cuda_runtime.h"
#endif

namespace flexgen {

const char* backend_name(Backend backend) { return backend == Backend::kHost ? "host" : "cuda"; }

bool cuda_backend_available() { return cuda_backend_built() && !list_gpus().empty(); }

Backend parse_backend(const std::string& text) {
  if (text == "host") return Backend::kHost;
  if (text == "auto") return cuda_backend_available() ? Backend::kCuda : Backend::kHost;
  FLEXGEN_REQUIRE(text == "cuda", "--backend must be auto, host or cuda (got '", text, "')");
  FLEXGEN_REQUIRE(cuda_backend_built(), "--backend cuda: this build has no CUDA backend (nvcc was not found "
                  "when it was configured); use --backend host");
  FLEXGEN_REQUIRE(!list_gpus().empty(), "--backend cuda: no CUDA device is visible; use --backend host");
  return Backend::kCuda;
}

namespace {

// The host backend behind the Runtime interface; owns the dummy weights it made.
class HostBackend final : public Runtime {
 public:
  HostBackend(const Plan& plan, const WeightsSource& source, const RuntimeOptions& options)
      : runtime_(make(plan, source, options)) {}

  RunReport generate(const std::vector<std::vector<std::int32_t>>& prompts, const SamplingConfig& sampling,
                     std::optional<std::int32_t> stop_token, const BlockShape& shape) override {
    return runtime_->generate(prompts, sampling, stop_token, shape);
  }
  const Schedule& schedule() const override { return runtime_->schedule(); }
  const MemoryPlan& memory_plan() const override { return runtime_->memory_plan(); }
  Backend backend() const override { return Backend::kHost; }

 private:
  // The family's weights, or its dummy weights (kept for the runtime's lifetime: the host
  // runtime reads nothing from them after placing them, but keeping them is cheap to reason about).
  std::unique_ptr<HostRuntime> make(const Plan& plan, const WeightsSource& source, const RuntimeOptions& options) {
    if (plan.spec.family == ModelFamily::kLlama) {
      if (source.llama_weights != nullptr) return std::make_unique<HostRuntime>(plan, *source.llama_weights, options);
      llama_dummy_ = make_dummy_llama_weights(plan.spec, source.dummy_seed);
      return std::make_unique<HostRuntime>(plan, llama_dummy_, options);
    }
    if (source.weights != nullptr) return std::make_unique<HostRuntime>(plan, *source.weights, options);
    dummy_ = make_dummy_opt_weights(plan.spec, source.dummy_seed);
    return std::make_unique<HostRuntime>(plan, dummy_, options);
  }

  OptWeights dummy_;
  LlamaWeights llama_dummy_;
  std::unique_ptr<HostRuntime> runtime_;
};

}  // namespace

std::unique_ptr<Runtime> make_runtime(Backend backend, const Plan& plan, const WeightsSource& weights,
                                      const RuntimeOptions& options) {
  if (backend == Backend::kHost) return std::make_unique<HostBackend>(plan, weights, options);
#ifdef FLEXGEN_HAVE_CUDA
  return make_cuda_runtime(plan, weights, options);
#else
  fail("the CUDA backend is not built into this binary");
#endif
}

}  // namespace flexgen
