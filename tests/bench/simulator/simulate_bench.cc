// The simulator on the paper's largest run: OPT-175B, prompt 512, generation 32, block 32 x 8,
// --percent 0 50 0 0 0 100 (weights half CPU, half disk; KV cache on disk; activations on the
// CPU), CPU delegation of attention, zig-zag. Durations from a plain bytes / flops model over the
// paper's T4 machine (experiments/hardware/t4-paper.json):
//   flexgen_bench --benchmark_filter=Simulate
// Reports tasks and events handled per second of the whole replay (durations, event loop,
// summaries). Target: the whole run in under one second on one core.
#include <benchmark/benchmark.h>

#include <filesystem>

#include "engine/core/hardware_spec.h"
#include "engine/runtime/plan.h"
#include "engine/runtime/schedule.h"
#include "simulator/pipeline.h"
#include "simulator/simulator.h"

namespace flexgen {
namespace {

// Link tasks: bytes over the link's rate. GPU tasks: GEMM and attention FLOPs at the prefill or
// decode rate. CPU tasks: attention FLOPs at the CPU rate.
class BytesFlopsModel : public DurationModel {
 public:
  explicit BytesFlopsModel(const HardwareSpec& hw) : hw_(hw) {}
  Nanoseconds duration(const Task& t) const override {
    const bool prefill = t.token == 0;
    double s = 0;
    switch (t.resource()) {
      case Resource::kGpuCompute:
        s = t.gemm_flops / (prefill ? hw_.gpu_gemm_prefill_flops_per_s : hw_.gpu_gemm_decode_flops_per_s) +
            t.attention_flops /
                (prefill ? hw_.gpu_attention_prefill_flops_per_s : hw_.gpu_attention_decode_flops_per_s);
        break;
      case Resource::kCpuCompute: s = t.attention_flops / hw_.cpu_attention_flops_per_s; break;
      case Resource::kH2D: s = static_cast<double>(t.bytes.h2d) / hw_.h2d_bytes_per_s; break;
      case Resource::kD2H: s = static_cast<double>(t.bytes.d2h) / hw_.d2h_bytes_per_s; break;
      case Resource::kDiskRead: s = static_cast<double>(t.bytes.disk_read) / hw_.disk_read_bytes_per_s; break;
      case Resource::kDiskWrite: s = static_cast<double>(t.bytes.disk_write) / hw_.disk_write_bytes_per_s; break;
    }
    return static_cast<Nanoseconds>(s * 1e9 + 0.5);
  }

 private:
  HardwareSpec hw_;
};

struct Opt175b {
  Plan plan;
  Schedule schedule;
  HardwareSpec hw;

  Opt175b() : plan(make()), schedule(make_schedule(plan, ScheduleKind::kZigZag)), hw(load_hw()) {}

  static Plan make() {
    PolicyConfig c;
    c.gpu_batch_size = 32;
    c.num_gpu_batches = 8;
    c.set_percent({0, 50, 0, 0, 0, 100});
    c.cpu_cache_compute = true;
    c.pin_weight = false;
    Workload w;
    w.prompt_len = 512;
    w.gen_len = 32;
    w.num_sequences = 32 * 8;
    return make_plan(ModelSpec::from_name("opt-175b"), w, Policy::create(c));
  }
  static HardwareSpec load_hw() {
    const std::filesystem::path here = std::filesystem::path(__FILE__).parent_path();
    return HardwareSpec::from_file(here / "../../../experiments/hardware/t4-paper.json");
  }
};

const Opt175b& fixture() {
  static const Opt175b f;
  return f;
}

void BM_SimulateOpt175b(benchmark::State& state) {
  const Opt175b& f = fixture();
  const BytesFlopsModel model(f.hw);
  std::int64_t events = 0;
  for (auto _ : state) {
    const SimResult r = simulate(f.plan, f.schedule, model);
    events += r.events;
    benchmark::DoNotOptimize(r.makespan);
  }
  state.counters["tasks"] = static_cast<double>(f.schedule.tasks.size());
  state.counters["tasks_per_s"] =
      benchmark::Counter(static_cast<double>(f.schedule.tasks.size()) * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
  state.counters["events_per_s"] = benchmark::Counter(static_cast<double>(events), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SimulateOpt175b)->Unit(benchmark::kMillisecond);

// The same schedule over 4 GPUs in a pipeline (per-GPU hosts, a 25 GB/s link).
void BM_SimulatePipelineOpt175b4Gpus(benchmark::State& state) {
  const Opt175b& f = fixture();
  const BytesFlopsModel model(f.hw);
  PipelineOptions o;
  o.num_stages = 4;
  o.link_bytes_per_s = 25e9;
  std::int64_t events = 0;
  for (auto _ : state) {
    const PipelineResult r = simulate_pipeline(f.plan, f.schedule, model, o);
    events += r.events;
    benchmark::DoNotOptimize(r.makespan);
  }
  state.counters["events_per_s"] = benchmark::Counter(static_cast<double>(events), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SimulatePipelineOpt175b4Gpus)->Unit(benchmark::kMillisecond);

// For scale: generating the schedule itself (the engine's make_schedule).
void BM_MakeScheduleOpt175b(benchmark::State& state) {
  const Opt175b& f = fixture();
  for (auto _ : state) benchmark::DoNotOptimize(make_schedule(f.plan, ScheduleKind::kZigZag).tasks.size());
}
BENCHMARK(BM_MakeScheduleOpt175b)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace flexgen
