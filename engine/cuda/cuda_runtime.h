#pragma once
// The offloading runtime on the CUDA backend: the same Plan, MemoryPlan and Schedule as the host
// backend, run on one GPU. Plain C++ header; defined only in builds with the CUDA backend
// (FLEXGEN_HAVE_CUDA). See docs/runtime.md ("CUDA backend").
#include <memory>

#include "engine/runtime/runtime.h"

namespace flexgen {

// Throws flexgen::Error when the plan is not fp16 (the CUDA backend stores and computes in fp16:
// make the plan from a spec with DType::kF16), when the plan with the backend's workspace does
// not fit the budgets, or when no device is present.
std::unique_ptr<Runtime> make_cuda_runtime(const Plan& plan, const WeightsSource& weights,
                                           const RuntimeOptions& options);

}  // namespace flexgen
