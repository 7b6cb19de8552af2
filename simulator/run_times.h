#pragma once
// Latency and throughput figures of a simulated run, defined as the engine's RunReport defines
// them (engine/runtime/host_runtime.h): prefill ends with the last task of token 0, decode is the
// rest; throughput counts block size x gen_len generated tokens over the whole run.
#include <cstdint>

#include "engine/core/units.h"
#include "engine/runtime/plan.h"

namespace flexgen {

struct RunTimes {
  Nanoseconds makespan = 0;
  Nanoseconds prefill_ns = 0;
  Nanoseconds decode_ns = 0;
  std::int64_t generated_tokens = 0;
  double throughput_tok_s = 0;
  double decode_throughput_tok_s = 0;
};

// From the end of the last task and the end of the last task of token 0.
RunTimes run_times(const Plan& plan, Nanoseconds makespan, Nanoseconds prefill_end);

}  // namespace flexgen
