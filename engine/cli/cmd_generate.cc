// flexgen generate: text in, text out, through the offloading runtime.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include "engine/cli/command.h"
#include "engine/cli/policy_options.h"
#include "engine/core/error.h"
#include "engine/core/format.h"
#include "engine/core/hardware_spec.h"
#include "engine/core/model_spec.h"
#include "engine/core/units_parse.h"
#include "engine/model/opt_weights.h"
#include "engine/runtime/host_runtime.h"
#include "engine/text/bpe_tokenizer.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace flexgen::cli {

namespace {

constexpr const char* kUsage =
    "usage: flexgen generate --model MODEL [--prompt TEXT ...] [options]\n\n"
    "Generates text with an OPT model through the offloading runtime (host backend). MODEL is a\n"
    "directory saved by HF transformers (config.json, model.safetensors or an index with shards,\n"
    "vocab.json, merges.txt) or a name from the built-in table (opt-125m ... opt-175b), which runs\n"
    "with seeded dummy weights and dummy prompts of --prompt-len tokens.\n\n"
    "Each --prompt is one sequence; the block (gpu batch size x gpu batches) is filled by repeating\n"
    "the prompts. Text goes to stdout, a summary to stderr; --json prints one object instead.";

struct LoadedModel {
  ModelSpec spec;
  OptWeights weights;
  std::optional<BpeTokenizer> tokenizer;
  bool dummy = false;
};

// Host memory in bytes (physical pages), or 0 when unknown.
Bytes physical_memory() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<Bytes>(pages) * page : 0;
}

LoadedModel load_model(const std::string& model, std::uint64_t seed) {
  LoadedModel m;
  const fs::path dir(model);
  if (fs::is_directory(dir)) {
    FLEXGEN_REQUIRE(fs::exists(dir / "config.json"), model, ": no config.json in this directory");
    m.spec = ModelSpec::from_config_json(dir / "config.json");
    m.weights = load_opt_weights(m.spec, dir);
    if (fs::exists(dir / "vocab.json") && fs::exists(dir / "merges.txt")) m.tokenizer = BpeTokenizer::from_dir(dir);
    return m;
  }
  FLEXGEN_REQUIRE(!fs::exists(dir), model, ": not a model directory");
  m.spec = ModelSpec::from_name(model);
  m.dummy = true;
  // Dummy weights live in host memory as float32 before placement: refuse what cannot fit.
  const Bytes need = m.spec.total_params() * 4;
  const Bytes have = physical_memory();
  FLEXGEN_REQUIRE(have == 0 || need < have * 9 / 10, "dummy weights of ", m.spec.name, " need ",
                  format_bytes(need), " of host memory as float32 before placement; this machine has ",
                  format_bytes(have), " (the CUDA backend makes them on the GPU instead)");
  m.weights = make_dummy_opt_weights(m.spec, seed);
  return m;
}

std::vector<std::int32_t> dummy_prompt(const ModelSpec& spec, std::int64_t length, std::uint64_t seed,
                                       std::int64_t index) {
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

}  // namespace

int run_generate(const std::vector<std::string>& args) {
  RunFlags flags;
  std::vector<std::string> prompt_texts;
  std::string gpu_mem, cpu_mem, disk_mem, hardware;
  std::string offload_dir = (fs::temp_directory_path() / "flexgen-offload").string();
  std::string schedule = "zig-zag";
  std::int64_t stop_token = -2;  // -2: the model's end token for real models, none for dummy ones

  po::options_description desc("Options", 100);
  desc.add_options()("help,h", "show this help")(
      "prompt", po::value(&prompt_texts)->composing(), "a prompt (repeatable: one sequence each)");
  add_run_options(desc, flags);
  po::options_description tiers("Memory tiers and schedule", 100);
  tiers.add_options()
      ("hardware", po::value(&hardware),
       "a HardwareSpec JSON (experiments/hardware/): its capacities are the default tier budgets")
      ("gpu-mem", po::value(&gpu_mem), "GPU tier budget (e.g. 16GiB, 8e9, unlimited; default: --hardware's, or unlimited)")
      ("cpu-mem", po::value(&cpu_mem), "CPU tier budget")
      ("disk-mem", po::value(&disk_mem), "disk tier budget")
      ("offload-dir", po::value(&offload_dir)->default_value(offload_dir), "directory of the disk tier")
      ("schedule", po::value(&schedule)->default_value(schedule), "zig-zag or row-by-row")
      ("stop-token", po::value(&stop_token),
       "token id that ends a sequence (default: the model's end token; -1: none)");
  desc.add(tiers);
  po::variables_map vm;
  if (!parse_command_line(args, kUsage, desc, vm)) return 0;
  flags.gpu_batch_size_given = vm.count("gpu-batch-size") > 0;

  ScheduleKind kind;
  if (schedule == "zig-zag") {
    kind = ScheduleKind::kZigZag;
  } else if (schedule == "row-by-row") {
    kind = ScheduleKind::kRowByRow;
  } else {
    fail("--schedule must be zig-zag or row-by-row (got '", schedule, "')");
  }
  RuntimeOptions options;
  constexpr Bytes kUnlimited = std::numeric_limits<Bytes>::max() / 4;
  options.budgets[Tier::kGpu] = options.budgets[Tier::kCpu] = options.budgets[Tier::kDisk] = kUnlimited;
  if (!hardware.empty()) {
    const HardwareSpec hw = HardwareSpec::from_file(hardware);
    options.budgets[Tier::kGpu] = hw.gpu_memory_bytes;
    options.budgets[Tier::kCpu] = hw.cpu_memory_bytes;
    options.budgets[Tier::kDisk] = hw.disk_bytes;
  }
  auto set_budget = [&](const std::string& text, Tier tier) {
    if (text.empty()) return;
    options.budgets[tier] = text == "unlimited" ? kUnlimited : parse_bytes(text);
  };
  set_budget(gpu_mem, Tier::kGpu);
  set_budget(cpu_mem, Tier::kCpu);
  set_budget(disk_mem, Tier::kDisk);
  options.offload_dir = offload_dir;
  options.schedule = kind;

  FLEXGEN_REQUIRE(flags.gen_len >= 1, "--gen-len must be at least 1 (got ", flags.gen_len, ")");
  FLEXGEN_REQUIRE(flags.prompt_len >= 1, "--prompt-len must be at least 1 (got ", flags.prompt_len, ")");
  const SamplingConfig sampling = sampling_from_flags(flags);
  const std::int64_t num_prompts = prompt_texts.empty() ? 1 : static_cast<std::int64_t>(prompt_texts.size());
  const Policy policy = policy_from_flags(flags, num_prompts);
  FLEXGEN_REQUIRE(policy.block_size() >= num_prompts, num_prompts, " prompts do not fit a block of ",
                  policy.gpu_batch_size(), " x ", policy.num_gpu_batches(),
                  " sequences; raise --gpu-batch-size or --num-gpu-batches");

  LoadedModel model = load_model(flags.model, flags.seed);
  const ModelSpec& spec = model.spec;

  // Prompts as token ids (OPT's tokenizer starts every prompt with </s>).
  std::vector<std::vector<std::int32_t>> distinct;
  std::int64_t prompt_len = flags.prompt_len;
  if (!prompt_texts.empty()) {
    FLEXGEN_REQUIRE(model.tokenizer.has_value(), flags.model,
                    ": --prompt needs vocab.json and merges.txt in the model directory");
    std::int64_t longest = 0;
    for (const std::string& text : prompt_texts) {
      std::vector<std::int32_t> ids = {static_cast<std::int32_t>(spec.bos_token_id)};
      for (std::int32_t id : model.tokenizer->encode(text)) ids.push_back(id);
      longest = std::max<std::int64_t>(longest, static_cast<std::int64_t>(ids.size()));
      distinct.push_back(std::move(ids));
    }
    if (vm.count("prompt-len") && !vm["prompt-len"].defaulted()) {
      FLEXGEN_REQUIRE(prompt_len >= longest, "--prompt-len ", prompt_len, " is shorter than the longest prompt (",
                      longest, " tokens)");
    } else {
      prompt_len = longest;
    }
  } else {
    for (std::int64_t i = 0; i < num_prompts; ++i) distinct.push_back(dummy_prompt(spec, prompt_len, flags.seed, i));
  }
  std::vector<std::vector<std::int32_t>> block;
  for (std::int64_t i = 0; i < policy.block_size(); ++i) block.push_back(distinct[static_cast<std::size_t>(i % num_prompts)]);

  Workload workload;
  workload.prompt_len = prompt_len;
  workload.gen_len = flags.gen_len;
  workload.num_sequences = policy.block_size();
  workload.sampling = sampling;
  std::optional<std::int32_t> stop;
  if (stop_token == -2) {
    if (!model.dummy) stop = static_cast<std::int32_t>(spec.eos_token_id);
  } else if (stop_token >= 0) {
    FLEXGEN_REQUIRE(stop_token < spec.vocab_size, "--stop-token ", stop_token, " is outside the vocabulary");
    stop = static_cast<std::int32_t>(stop_token);
  }
  if (stop) workload.stop_token = *stop;

  const Plan plan = make_plan(spec, workload, policy);
  HostRuntime runtime(plan, model.weights, options);
  const RunReport report = runtime.generate(block, sampling, stop);

  auto text_of = [&](const std::vector<std::int32_t>& ids) {
    return model.tokenizer ? model.tokenizer->decode(ids) : std::string();
  };
  // The prompt as given, or a dummy prompt's text when none was.
  auto prompt_text = [&](std::int64_t i) {
    return prompt_texts.empty() ? text_of(distinct[static_cast<std::size_t>(i)])
                                : prompt_texts[static_cast<std::size_t>(i)];
  };
  if (flags.json) {
    nlohmann::json seqs = nlohmann::json::array();
    for (std::int64_t i = 0; i < num_prompts; ++i) {
      const auto& out = report.tokens[static_cast<std::size_t>(i)];
      nlohmann::json s = {{"prompt_tokens", distinct[static_cast<std::size_t>(i)]}, {"output_tokens", out}};
      if (model.tokenizer) {
        s["prompt"] = prompt_text(i);
        s["output"] = text_of(out);
      }
      seqs.push_back(s);
    }
    nlohmann::json j = {
        {"model", spec.name},
        {"dummy_weights", model.dummy},
        {"backend", "host"},
        {"schedule", schedule_kind_name(kind)},
        {"prompt_len", prompt_len},
        {"gen_len", flags.gen_len},
        {"num_sequences", policy.block_size()},
        {"policy", policy.to_json()},
        {"sequences", seqs},
        {"prefill_s", report.prefill_s},
        {"decode_s", report.decode_s},
        {"total_s", report.total_s},
        {"generated_tokens", report.generated_tokens},
        {"throughput_tok_s", report.throughput_tok_s},
        {"decode_throughput_tok_s", report.decode_throughput_tok_s},
        {"peak_memory", tier_json(report.peak)},
        {"moved", link_json(report.moved)},
    };
    // Generated bytes can end inside a UTF-8 character: replace what is not valid.
    std::cout << j.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
  }
  for (std::int64_t i = 0; i < num_prompts; ++i) {
    const auto& out = report.tokens[static_cast<std::size_t>(i)];
    if (model.tokenizer) {
      std::cout << prompt_text(i) << text_of(out) << "\n";
    } else {
      std::cout << "sequence " << i << ":";
      for (std::int32_t id : out) std::cout << " " << id;
      std::cout << "\n";
    }
    if (num_prompts > 1) std::cout << "----\n";
  }
  std::cerr << "flexgen generate: " << spec.name << ", " << policy.block_size() << " sequences x "
            << flags.gen_len << " tokens, " << schedule_kind_name(kind) << "; prefill " << report.prefill_s
            << " s, decode " << report.decode_s << " s, " << report.throughput_tok_s << " tok/s; peak gpu "
            << format_bytes(report.peak[Tier::kGpu]) << ", cpu " << format_bytes(report.peak[Tier::kCpu])
            << ", disk " << format_bytes(report.peak[Tier::kDisk]) << "\n";
  return 0;
}

}  // namespace flexgen::cli
