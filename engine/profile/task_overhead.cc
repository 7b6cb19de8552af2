#include "engine/profile/task_overhead.h"

#include <limits>
#include <memory>
#include <vector>

#include "engine/core/error.h"
#include "engine/core/format.h"
#include "engine/runtime/runtime.h"

namespace flexgen {

TaskOverheadMeasurement measure_task_overhead(int device) {
  FLEXGEN_REQUIRE(cuda_backend_available(), "profile: the task overhead needs the CUDA backend and a GPU");
  FLEXGEN_REQUIRE(device == 0, "profile: the task overhead is measured on device 0 (the runtime's)");
  ModelSpec spec;
  spec.name = "profile-tiny";
  spec.num_layers = 8;
  spec.hidden_size = 128;
  spec.num_heads = 2;
  spec.ffn_dim = 512;
  spec.vocab_size = 512;
  spec.max_positions = 64;
  spec.dtype = DType::kF16;
  spec.validate();
  Workload workload;
  workload.prompt_len = 16;
  workload.gen_len = 16;
  workload.num_sequences = 1;
  PolicyConfig config;  // gpu batch 1 x 1, everything on the GPU
  const Policy policy = Policy::create(config);
  const Plan plan = make_plan(spec, workload, policy);
  RuntimeOptions options;
  for (Tier t : kAllTiers) options.budgets[t] = std::numeric_limits<Bytes>::max() / 4;  // unlimited, as the commands'
  options.keep_task_timings = true;
  const std::unique_ptr<Runtime> runtime = make_runtime(Backend::kCuda, plan, WeightsSource{nullptr, 7}, options);
  std::vector<std::int32_t> prompt;
  for (std::int32_t i = 0; i < workload.prompt_len; ++i) prompt.push_back(2 + i);
  TaskOverheadMeasurement m;
  m.model = str_cat("hidden ", spec.hidden_size, ", ", spec.num_heads, " heads, ", spec.num_layers,
                    " layers, batch 1, prompt ", workload.prompt_len, ", ", workload.gen_len, " tokens");
  for (int pass = 0; pass < 3; ++pass) {  // the first pass warms up
    const RunReport report = runtime->generate({prompt}, SamplingConfig{}, std::nullopt);
    if (pass == 0) continue;
    const Schedule& schedule = runtime->schedule();
    for (std::size_t i = 0; i < schedule.tasks.size() && i < report.task_timings.size(); ++i) {
      const Task& t = schedule.tasks[i];
      if (t.token == 0 || !plan.is_decoder_layer(t.layer)) continue;
      if (t.kind != TaskKind::kCompute && t.kind != TaskKind::kComputePost) continue;
      m.seconds.push_back(report.task_timings[i].end_s - report.task_timings[i].start_s);
    }
  }
  FLEXGEN_REQUIRE(!m.seconds.empty(), "profile: the tiny model's run timed no decode compute task");
  return m;
}

}  // namespace flexgen
