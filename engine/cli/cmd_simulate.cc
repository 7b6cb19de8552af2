// flexgen simulate: the engine's own schedule replayed against the cost model on any hardware.
#include <algorithm>
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
#include "engine/pipeline/partition.h"
#include "simulator/cost_durations.h"
#include "simulator/pipeline.h"
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
    "(e.g. --set h2d_bytes_per_s=32e9 --set gpu_memory_bytes=24GiB).\n\n"
    "--num-gpus G predicts `flexgen generate --num-gpus G`: a pipeline of G GPUs of this hardware, each\n"
    "holding the same layers as the engine's stages (engine/pipeline/partition.h), hidden states\n"
    "crossing a link of --gpu-link-bw bytes/s (default: the slower of h2d and d2h: through PCIe)\n"
    "after --gpu-link-latency seconds; --hosts one (the local launcher: one host's CPU, memory and\n"
    "disk shared by the stages) or per-gpu (a host per GPU, as an MPI launch over G hosts).";

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
  std::int32_t num_gpus = 1;
  double link_bw = 0, link_latency_s = 20e-6;
  std::string hosts = "one";
  po::options_description pipe("Pipeline parallelism (docs/multi-gpu.md)", 100);
  pipe.add_options()("num-gpus", po::value(&num_gpus)->default_value(1), "GPUs (pipeline stages)")(
      "gpu-link-bw", po::value(&link_bw), "bytes/s between consecutive GPUs (default: min(h2d, d2h))")(
      "gpu-link-latency", po::value(&link_latency_s)->default_value(link_latency_s),
      "seconds added to each transfer between GPUs")(
      "hosts", po::value(&hosts)->default_value(hosts), "one (one host for every GPU) or per-gpu");
  sim.add(pipe);
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
  FLEXGEN_REQUIRE(num_gpus >= 1, "--num-gpus must be at least 1 (got ", num_gpus, ")");
  FLEXGEN_REQUIRE(hosts == "one" || hosts == "per-gpu", "--hosts must be one or per-gpu (got '", hosts, "')");
  if (num_gpus > 1) {
    PipelineOptions po;
    po.num_stages = num_gpus;
    po.link_bytes_per_s = vm.count("gpu-link-bw") ? link_bw
                                                  : std::min(hardware.h2d_bytes_per_s, hardware.d2h_bytes_per_s);
    FLEXGEN_REQUIRE(po.link_bytes_per_s > 0 && link_latency_s >= 0, "--gpu-link-bw must be positive and "
                    "--gpu-link-latency not negative");
    po.link_latency_ns = static_cast<Nanoseconds>(link_latency_s * 1e9);
    po.shared_host = hosts == "one";
    po.capacities = options.capacities;
    const CostModelDurations durations(plan, hardware, kind);
    const PipelineResult pr = simulate_pipeline(plan, sched, durations, po);
    if (!trace_file.empty()) {
      write_chrome_trace(trace_file, {trace_process(str_cat("simulated ", spec.name, " on ", num_gpus, " x ",
                                                            hardware.name), sched, pr)});
    }
    nlohmann::json stages = nlohmann::json::array();
    for (std::int32_t g = 0; g < num_gpus; ++g) {
      const LayerRange r = stage_layers(pr.stage_of_layer, g);
      const MemoryPlan& m = pr.stage_memory[static_cast<std::size_t>(g)];
      stages.push_back({{"stage", g},
                        {"layers", {r.first, r.last}},
                        {"memory",
                         {{"gpu_bytes", m.total[Tier::kGpu]}, {"cpu_bytes", m.total[Tier::kCpu]},
                          {"disk_bytes", m.total[Tier::kDisk]}}}});
    }
    nlohmann::json lanes = nlohmann::json::object();
    for (const PipelineLane& l : pr.lanes) lanes[l.name] = {{"busy_s", to_seconds(l.busy)}, {"utilization", l.utilization}};
    const std::string prefill_critical = pr.lanes[static_cast<std::size_t>(pr.prefill_critical_lane)].name;
    const std::string decode_critical = pr.lanes[static_cast<std::size_t>(pr.decode_critical_lane)].name;
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
          {"num_gpus", num_gpus},
          {"hosts", hosts},
          {"gpu_link_bytes_per_s", po.link_bytes_per_s},
          {"gpu_link_latency_s", link_latency_s},
          {"prefill_s", to_seconds(pr.prefill_ns)},
          {"decode_s", to_seconds(pr.decode_ns)},
          {"total_s", to_seconds(pr.makespan)},
          {"generated_tokens", pr.generated_tokens},
          {"throughput_tok_s", pr.throughput_tok_s},
          {"decode_throughput_tok_s", pr.decode_throughput_tok_s},
          {"critical_lane", {{"prefill", prefill_critical}, {"decode", decode_critical}}},
          {"lanes", lanes},
          {"stages", stages},
          {"transfers", pr.transfers.size()},
      };
      std::cout << j.dump(1) << "\n";
      return 0;
    }
    std::cout << "model " << spec.name << " on " << num_gpus << " x " << hardware.name << " ("
              << (po.shared_host ? "one host" : "a host per GPU") << "), " << schedule_kind_name(kind) << ", "
              << policy.to_string() << "\n"
              << workload.num_sequences << " sequences, prompt " << workload.prompt_len << ", generation "
              << workload.gen_len << "\n"
              << std::setprecision(4) << "throughput " << pr.throughput_tok_s << " tok/s (decode "
              << pr.decode_throughput_tok_s << " tok/s); prefill " << to_seconds(pr.prefill_ns) << " s, decode "
              << to_seconds(pr.decode_ns) << " s, total " << to_seconds(pr.makespan) << " s\n"
              << "critical lane: prefill " << prefill_critical << ", decode " << decode_critical << "\n";
    for (const auto& st : stages) {
      std::cout << "stage " << st["stage"] << ": layers " << st["layers"][0] << ".." << st["layers"][1] << ", gpu "
                << format_bytes(st["memory"]["gpu_bytes"].get<Bytes>()) << ", cpu "
                << format_bytes(st["memory"]["cpu_bytes"].get<Bytes>()) << ", disk "
                << format_bytes(st["memory"]["disk_bytes"].get<Bytes>()) << "\n";
    }
    return 0;
  }
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
