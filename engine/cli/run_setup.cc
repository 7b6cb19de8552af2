#include "engine/cli/run_setup.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <limits>
#include <random>

#include <boost/program_options.hpp>

#include "engine/core/error.h"
#include "engine/core/format.h"
#include "engine/core/hardware_spec.h"
#include "engine/core/units_parse.h"
#include "engine/cuda/device_info.h"
#include "engine/sweep/provenance.h"
#include "simulator/predict.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace flexgen::cli {

namespace {

// Host memory in bytes (physical pages), or 0 when unknown.
Bytes physical_memory() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<Bytes>(pages) * page : 0;
}

}  // namespace

po::options_description tier_options(TierFlags& flags) {
  if (flags.offload_dir.empty()) flags.offload_dir = (fs::temp_directory_path() / "flexgen-offload").string();
  po::options_description tiers("Backend, memory tiers and schedule", 100);
  tiers.add_options()
      ("backend", po::value(&flags.backend)->default_value(flags.backend),
       "auto (cuda when a GPU is present, else host), host or cuda")
      ("hardware", po::value(&flags.hardware),
       "a HardwareSpec JSON (experiments/hardware/): its capacities are the default tier budgets")
      ("gpu-mem", po::value(&flags.gpu_mem), "GPU tier budget (e.g. 16GiB, 8e9, unlimited; default: --hardware's, or unlimited)")
      ("cpu-mem", po::value(&flags.cpu_mem), "CPU tier budget")
      ("disk-mem", po::value(&flags.disk_mem), "disk tier budget")
      ("offload-dir", po::value(&flags.offload_dir)->default_value(flags.offload_dir), "directory of the disk tier")
      ("schedule", po::value(&flags.schedule)->default_value(flags.schedule), "zig-zag or row-by-row");
  return tiers;
}

RuntimeOptions runtime_options_from(const TierFlags& flags) {
  RuntimeOptions options;
  if (flags.schedule == "zig-zag") {
    options.schedule = ScheduleKind::kZigZag;
  } else if (flags.schedule == "row-by-row") {
    options.schedule = ScheduleKind::kRowByRow;
  } else {
    fail("--schedule must be zig-zag or row-by-row (got '", flags.schedule, "')");
  }
  constexpr Bytes kUnlimited = std::numeric_limits<Bytes>::max() / 4;
  options.budgets[Tier::kGpu] = options.budgets[Tier::kCpu] = options.budgets[Tier::kDisk] = kUnlimited;
  if (!flags.hardware.empty()) {
    const HardwareSpec hw = HardwareSpec::from_file(flags.hardware);
    options.budgets[Tier::kGpu] = hw.gpu_memory_bytes;
    options.budgets[Tier::kCpu] = hw.cpu_memory_bytes;
    options.budgets[Tier::kDisk] = hw.disk_bytes;
  }
  auto set_budget = [&](const std::string& text, Tier tier) {
    if (text.empty()) return;
    options.budgets[tier] = text == "unlimited" ? kUnlimited : parse_bytes(text);
  };
  set_budget(flags.gpu_mem, Tier::kGpu);
  set_budget(flags.cpu_mem, Tier::kCpu);
  set_budget(flags.disk_mem, Tier::kDisk);
  options.offload_dir = flags.offload_dir;
  return options;
}

LoadedModel load_model(const std::string& model, std::uint64_t seed, Backend backend) {
  LoadedModel m;
  m.seed = seed;
  const fs::path dir(model);
  if (fs::is_directory(dir)) {
    FLEXGEN_REQUIRE(fs::exists(dir / "config.json"), model, ": no config.json in this directory");
    m.spec = ModelSpec::from_config_json(dir / "config.json");
    if (m.spec.family == ModelFamily::kLlama) {
      m.llama_weights = load_llama_weights(m.spec, dir);
    } else {
      m.weights = load_opt_weights(m.spec, dir);
    }
    ModelTokenizer tokenizer = load_model_tokenizer(dir);
    m.tokenizer = std::move(tokenizer.tokenizer);
    m.tokenizer_unavailable = std::move(tokenizer.unavailable);
  } else {
    FLEXGEN_REQUIRE(!fs::exists(dir), model, ": not a model directory");
    m.spec = ModelSpec::from_name(model);
    m.dummy = true;
    m.tokenizer_unavailable = model + ": dummy weights come without a tokenizer";
    if (backend == Backend::kHost) {
      // The host backend makes dummy weights as float32 before placement: refuse what cannot fit.
      const Bytes need = m.spec.total_params() * 4;
      const Bytes have = physical_memory();
      FLEXGEN_REQUIRE(have == 0 || need < have * 9 / 10, "dummy weights of ", m.spec.name, " need ",
                      format_bytes(need), " of host memory as float32 on the host backend; this machine has ",
                      format_bytes(have), " (the CUDA backend writes them in place instead)");
    }
  }
  if (backend == Backend::kCuda) m.spec.dtype = DType::kF16;
  return m;
}

std::vector<std::int32_t> dummy_prompt(const ModelSpec& spec, std::int64_t length, std::uint64_t seed,
                                       std::int64_t index) {
  FLEXGEN_REQUIRE(length <= spec.max_positions, "--prompt-len ", length, " is more than the ", spec.max_positions,
                  " positions of model ", spec.name);
  std::mt19937_64 rng(seed * 1000003u + static_cast<std::uint64_t>(index));
  std::vector<std::int32_t> ids = {static_cast<std::int32_t>(spec.bos_token_id)};
  const auto span = static_cast<std::uint64_t>(spec.vocab_size - 4);
  while (static_cast<std::int64_t>(ids.size()) < length) ids.push_back(static_cast<std::int32_t>(4 + rng() % span));
  return ids;
}

nlohmann::json link_json(const LinkBytes& l) {
  return {{"h2d_bytes", l.h2d}, {"d2h_bytes", l.d2h}, {"disk_read_bytes", l.disk_read},
          {"disk_write_bytes", l.disk_write}};
}

nlohmann::json tier_json(const TierBytes& t) {
  return {{"gpu_bytes", t[Tier::kGpu]}, {"cpu_bytes", t[Tier::kCpu]}, {"disk_bytes", t[Tier::kDisk]}};
}

std::string device_name(Backend backend) {
  if (backend == Backend::kCuda) {
    const std::vector<GpuInfo> gpus = list_gpus();
    if (!gpus.empty()) return gpus.front().name;
  }
  return host_cpu_name();
}

nlohmann::json report_json(const RunReport& report) {
  return {
      {"prefill_s", report.prefill_s},
      {"decode_s", report.decode_s},
      {"total_s", report.total_s},
      {"generated_tokens", report.generated_tokens},
      {"tasks_skipped", report.tasks_skipped},
      {"throughput_tok_s", report.throughput_tok_s},
      {"decode_throughput_tok_s", report.decode_throughput_tok_s},
      {"peak_memory", tier_json(report.peak)},
      {"planned_memory", tier_json(report.planned)},
      {"moved", link_json(report.moved)},
      {"gpu_device_bytes", report.gpu_device_bytes},
  };
}

nlohmann::json task_time_json(const RunReport& report, const Schedule& schedule) {
  return kind_times_json(kind_times(schedule, measured_spans(report.task_timings)));
}

nlohmann::json op_time_json(const RunReport& report) {
  nlohmann::json j = nlohmann::json::object();
  for (const bool decode : {false, true}) {
    nlohmann::json ops = nlohmann::json::object();
    double busy = 0;
    for (const OpTiming& o : report.op_timings) {
      if (o.decode != decode) continue;
      ops[o.op] = {{"calls", o.calls}, {"busy_s", o.busy_s}};
      busy += o.busy_s;
    }
    const double wall = decode ? report.decode_s : report.prefill_s;
    const double idle = std::max(0.0, wall - busy);
    j[decode ? "decode" : "prefill"] = {{"wall_s", wall},
                                        {"busy_s", busy},
                                        {"idle_s", idle},
                                        {"idle_fraction", wall > 0 ? idle / wall : 0.0},
                                        {"ops", ops}};
  }
  return j;
}

}  // namespace flexgen::cli
