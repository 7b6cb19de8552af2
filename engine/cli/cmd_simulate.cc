// flexgen simulate: the engine's own schedule replayed against the cost model on any hardware.
#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include "engine/cli/command.h"
#include "engine/cli/policy_options.h"
#include "engine/core/error.h"
#include "engine/core/format.h"
#include "engine/core/hardware_spec.h"
#include "engine/core/input_lookup.h"
#include "engine/core/model_spec.h"
#include "engine/core/units_parse.h"
#include "engine/runtime/plan.h"
#include "engine/runtime/schedule.h"
#include "engine/sweep/sweep_file.h"
#include "simulator/predict.h"
#include "simulator/simulator.h"
#include "simulator/trace.h"

namespace po = boost::program_options;

namespace flexgen::cli {

namespace {

constexpr const char* kUsage =
    "usage: flexgen simulate --model MODEL --hardware FILE [options]\n\n"
    "Replays the schedule `flexgen generate` would run (same flags) on a hardware spec, each task\n"
    "timed by the cost model, and reports throughput, prefill and decode latency, the utilization\n"
    "of each resource, the critical resource of each phase and the peak memory of each tier.\n"
    "MODEL is a name from the built-in table (opt-125m ... opt-175b, llama-2-7b ... llama-3-70b) or a\n"
    "directory with an HF "
    "config.json (no weights are read). --set KEY=VALUE overrides one field of the hardware spec\n"
    "(e.g. --set h2d_bytes_per_s=32e9 --set gpu_memory_bytes=24GiB).";

// KEY=VALUE overrides of --set as (key, value text) pairs.
std::vector<std::pair<std::string, nlohmann::json>> parse_sets(const std::vector<std::string>& sets) {
  std::vector<std::pair<std::string, nlohmann::json>> out;
  for (const std::string& s : sets) {
    const auto eq = s.find('=');
    FLEXGEN_REQUIRE(eq != std::string::npos && eq > 0, "--set takes KEY=VALUE (got '", s, "')");
    out.emplace_back(s.substr(0, eq), nlohmann::json(s.substr(eq + 1)));
  }
  return out;
}

}  // namespace

int run_simulate(const std::vector<std::string>& args) {
  RunFlags flags;
  std::string hardware_file, trace_file, schedule = "zig-zag";
  std::string gpu_mem, cpu_mem, disk_mem;
  std::vector<std::string> sets;
  po::options_description desc("Options", 100);
  desc.add_options()("help,h", "show this help");
  add_run_options(desc, flags);
  po::options_description sim("Hardware and schedule", 100);
  sim.add_options()
      ("hardware", po::value(&hardware_file)->default_value(kDefaultHardwareFile), "a HardwareSpec JSON (experiments/hardware/)")
      ("set", po::value(&sets)->composing(), "override a hardware field: KEY=VALUE (repeatable)")
      ("gpu-mem", po::value(&gpu_mem), "GPU tier capacity (default: the hardware's)")
      ("cpu-mem", po::value(&cpu_mem), "CPU tier capacity")
      ("disk-mem", po::value(&disk_mem), "disk tier capacity")
      ("schedule", po::value(&schedule)->default_value(schedule), "zig-zag or row-by-row")
      ("trace", po::value(&trace_file), "write a Chrome/Perfetto trace JSON, one track per resource");
  desc.add(sim);
  po::variables_map vm;
  if (!parse_command_line(args, kUsage, desc, vm)) return 0;
  flags.gpu_batch_size_given = vm.count("gpu-batch-size") > 0;

  FLEXGEN_REQUIRE(schedule == "zig-zag" || schedule == "row-by-row",
                  "--schedule must be zig-zag or row-by-row (got '", schedule, "')");
  const ScheduleKind kind = schedule == "zig-zag" ? ScheduleKind::kZigZag : ScheduleKind::kRowByRow;
  const HardwareSpec hardware = with_hardware_overrides(load_hardware(hardware_file), parse_sets(sets), "--set ");
  const ModelSpec spec = load_model_spec(flags.model);
  const Policy policy = policy_from_flags(flags, 1);
  Workload workload;
  workload.prompt_len = flags.prompt_len;
  workload.gen_len = flags.gen_len;
  workload.num_sequences = policy.block_size();
  workload.sampling = sampling_from_flags(flags);
  const Plan plan = make_plan(spec, workload, policy);
  const Schedule sched = make_schedule(plan, kind);

  SimOptions options;
  options.capacities = tier_capacities(hardware);
  if (!gpu_mem.empty()) options.capacities[Tier::kGpu] = parse_bytes(gpu_mem);
  if (!cpu_mem.empty()) options.capacities[Tier::kCpu] = parse_bytes(cpu_mem);
  if (!disk_mem.empty()) options.capacities[Tier::kDisk] = parse_bytes(disk_mem);
  const Prediction prediction = predict_run(plan, sched, hardware, options);
  const SimResult& r = prediction.result;

  if (!trace_file.empty()) {
    write_chrome_trace(trace_file, {trace_process("simulated " + spec.name + " on " + hardware.name, sched, r)});
  }
  if (flags.json) {
    nlohmann::json j = {
        {"model", spec.name},
        {"hardware", hardware.name},
        {"schedule", schedule_kind_name(kind)},
        {"prompt_len", workload.prompt_len},
        {"gen_len", workload.gen_len},
        {"num_sequences", workload.num_sequences},
        {"policy", policy.to_json()},
        {"tasks", sched.tasks.size()},
    };
    j.update(prediction_json(prediction));
    std::cout << j.dump(1) << "\n";
    return 0;
  }
  std::cout << "model " << spec.name << " on " << hardware.name << ", " << schedule_kind_name(kind) << ", "
            << policy.to_string() << "\n"
            << workload.num_sequences << " sequences, prompt " << workload.prompt_len << ", generation "
            << workload.gen_len << ", " << sched.tasks.size() << " tasks\n"
            << std::setprecision(4) << "throughput " << r.throughput_tok_s << " tok/s (decode "
            << r.decode_throughput_tok_s << " tok/s); prefill " << to_seconds(r.prefill_ns) << " s, decode "
            << to_seconds(r.decode_ns) << " s, total " << to_seconds(r.makespan) << " s\n"
            << "critical resource: prefill " << resource_name(r.prefill.critical) << ", decode "
            << resource_name(r.decode.critical) << "\n"
            << "utilization:";
  for (int i = 0; i < kNumResources; ++i) {
    std::cout << " " << resource_name(static_cast<Resource>(i)) << " " << std::setprecision(3)
              << 100.0 * r.utilization[static_cast<std::size_t>(i)] << "%";
  }
  std::cout << "\npeak memory: gpu " << format_bytes(r.peak[Tier::kGpu]) << ", cpu "
            << format_bytes(r.peak[Tier::kCpu]) << ", disk " << format_bytes(r.peak[Tier::kDisk]) << "\n";
  return 0;
}

}  // namespace flexgen::cli
