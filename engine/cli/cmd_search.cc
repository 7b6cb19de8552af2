// flexgen search: the best policy for a model, a workload and a machine (FlexGen's LP search).
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include "engine/cli/command.h"
#include "engine/cli/policy_options.h"
#include "engine/core/error.h"
#include "engine/core/input_lookup.h"
#include "engine/core/units_parse.h"
#include "engine/search/policy_search.h"
#include "engine/search/search_report.h"
#include "simulator/predict.h"

namespace po = boost::program_options;

namespace flexgen::cli {
namespace {

Workload workload_for(std::int64_t prompt_len, std::int64_t gen_len) {
  Workload w;
  w.prompt_len = prompt_len;
  w.gen_len = gen_len;
  return w;
}

constexpr const char* kUsage =
    "usage: flexgen search --model MODEL [--hardware FILE] [options]\n\n"
    "Finds the policy with the highest predicted throughput for MODEL (a table name such as opt-30b,\n"
    "or a directory with config.json) generating --gen-len tokens after --prompt-len tokens on the\n"
    "machine of a hardware file: for each gpu batch size and number of gpu batches an LP (GLPK) over\n"
    "the placement of weights, KV cache and activations on GPU, CPU and disk, under the memory of\n"
    "each tier. The best placements are rounded to whole tensors and cache units and priced again on\n"
    "the real plan and schedule; that is what is printed, with a ready `flexgen generate` command.\n"
    "--hardware takes a path or a name under experiments/hardware/ (default: t4-paper).";

}  // namespace

int run_search(const std::vector<std::string>& args) {
  std::string model;
  std::int64_t prompt_len = 512, gen_len = 32;
  std::string hardware = kDefaultHardwareFile;
  std::int64_t gpu_batch_size = 0, num_gpu_batches = 0;
  bool compress_weight = false, compress_cache = false, cpu_cache_compute = false, no_cpu_cache_compute = false;
  bool no_disk = false, json = false, estimate_only = false;
  double attn_sparsity = 1.0;
  int top = 1;
  std::string gpu_mem, cpu_mem, disk_mem;

  po::options_description desc("Options");
  desc.add_options()
      ("help,h", "show this help")
      ("model", po::value(&model)->required(), "a table name (opt-125m ... opt-175b, llama-2-7b ... llama-3-70b) or a model directory with config.json")
      ("prompt-len", po::value(&prompt_len)->default_value(prompt_len), "prompt length in tokens")
      ("gen-len", po::value(&gen_len)->default_value(gen_len), "tokens to generate")
      ("hardware", po::value(&hardware)->default_value(hardware), "hardware file, or a name under experiments/hardware/")
      ("gpu-batch-size", po::value(&gpu_batch_size), "fix the gpu batch size")
      ("num-gpu-batches", po::value(&num_gpu_batches), "fix the number of gpu batches")
      ("compress-weight", po::bool_switch(&compress_weight), "4-bit weights (fixed on)")
      ("compress-cache", po::bool_switch(&compress_cache), "4-bit KV cache (fixed on)")
      ("cpu-cache-compute", po::bool_switch(&cpu_cache_compute),
       "fix CPU delegation of decode attention on (default: the search decides)")
      ("no-cpu-cache-compute", po::bool_switch(&no_cpu_cache_compute), "fix CPU delegation off")
      ("attn-sparsity", po::value(&attn_sparsity)->default_value(attn_sparsity),
       "fraction of cached positions kept by top-k sparse attention (fixed)")
      ("no-disk", po::bool_switch(&no_disk), "place nothing on disk")
      ("gpu-mem", po::value(&gpu_mem), "override the hardware file's GPU memory (e.g. 12GiB)")
      ("cpu-mem", po::value(&cpu_mem), "override the hardware file's CPU memory")
      ("disk-mem", po::value(&disk_mem), "override the hardware file's disk space")
      ("top", po::value(&top)->default_value(top), "also show the runners-up: the N best policies")
      ("estimate-only", po::bool_switch(&estimate_only),
       "rank by the per-step estimate alone (default: the best candidates are replayed on the simulator, which follows the engine's dependencies, and ranked by that)")
      ("json", po::bool_switch(&json), "print one JSON object instead of text");
  po::variables_map vm;
  if (!parse_command_line(args, kUsage, desc, vm)) return 0;

  FLEXGEN_REQUIRE(!(cpu_cache_compute && no_cpu_cache_compute),
                  "--cpu-cache-compute and --no-cpu-cache-compute exclude each other");
  HardwareSpec hw = load_hardware(hardware);
  if (!gpu_mem.empty()) hw.gpu_memory_bytes = parse_bytes(gpu_mem);
  if (!cpu_mem.empty()) hw.cpu_memory_bytes = parse_bytes(cpu_mem);
  if (!disk_mem.empty()) hw.disk_bytes = parse_bytes(disk_mem);
  FLEXGEN_REQUIRE(hw.gpu_memory_bytes > 0 && hw.cpu_memory_bytes > 0 && hw.disk_bytes > 0,
                  "--gpu-mem, --cpu-mem and --disk-mem must be positive (use --no-disk for no disk)");
  const ModelSpec spec = load_model_spec(model);

  SearchOptions options;
  if (vm.count("gpu-batch-size")) options.gpu_batch_size = gpu_batch_size;
  if (vm.count("num-gpu-batches")) options.num_gpu_batches = num_gpu_batches;
  options.compress_weight = compress_weight;
  options.compress_cache = compress_cache;
  options.cpu_cache_compute = cpu_cache_compute      ? SearchChoice::kOn
                              : no_cpu_cache_compute ? SearchChoice::kOff
                                                     : SearchChoice::kSearch;
  options.allow_disk = !no_disk;
  options.attn_sparsity = attn_sparsity;
  options.top = top;
  if (!estimate_only) {
    options.reprice = [&](const Policy& policy) { return simulated_estimate(spec, workload_for(prompt_len, gen_len), policy, hw); };
  }

  Workload workload;
  workload.prompt_len = prompt_len;
  workload.gen_len = gen_len;
  const SearchResult result = search_policy(spec, workload, hw, options);
  const TierValues caps = search_capacities(hw, options);
  if (json) {
    std::cout << search_result_json(model, workload, hw, caps, result).dump(2) << "\n";
  } else {
    std::cout << search_result_text(model, workload, hw, caps, result);
  }
  return 0;
}

}  // namespace flexgen::cli
