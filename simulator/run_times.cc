#include "simulator/run_times.h"

#include "simulator/duration_model.h"

namespace flexgen {

RunTimes run_times(const Plan& plan, Nanoseconds makespan, Nanoseconds prefill_end) {
  RunTimes r;
  const std::int64_t block = plan.policy.block_size();
  r.makespan = makespan;
  r.prefill_ns = prefill_end;
  r.decode_ns = makespan - prefill_end;
  r.generated_tokens = block * plan.workload.gen_len;
  r.throughput_tok_s = makespan > 0 ? static_cast<double>(r.generated_tokens) / to_seconds(makespan) : 0;
  r.decode_throughput_tok_s =
      r.decode_ns > 0 ? static_cast<double>(block * (plan.workload.gen_len - 1)) / to_seconds(r.decode_ns) : 0;
  return r;
}

}  // namespace flexgen
