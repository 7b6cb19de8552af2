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
#include "engine/cli/run_setup.h"
#include "engine/pipeline/launcher.h"
#include "engine/pipeline/mpi_bootstrap.h"
#include "engine/pipeline/socket_channel.h"
#include "engine/pipeline/stage.h"
#include "engine/runtime/runtime.h"
#include "engine/text/bpe_tokenizer.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace flexgen::cli {

namespace {

constexpr const char* kUsage =
    "usage: flexgen generate --model MODEL [--prompt TEXT ...] [options]\n\n"
    "Generates text with an OPT or LLaMA model through the offloading runtime. MODEL is a\n"
    "directory saved by HF transformers (config.json, model.safetensors or an index with shards,\n"
    "and the tokenizer: vocab.json + merges.txt, or tokenizer.model) or a name from the built-in\n"
    "table (opt-125m ... opt-175b, llama-2-7b ... llama-3-70b), which runs with seeded dummy\n"
    "weights and dummy prompts of --prompt-len tokens.\n\n"
    "Each --prompt is one sequence; the block (gpu batch size x gpu batches) is filled by repeating\n"
    "the prompts. Text goes to stdout, a summary to stderr; --json prints one object instead.\n\n"
    "--num-gpus G runs a pipeline of G stages (processes), each holding a contiguous range of layers\n"
    "(docs/multi-gpu.md); the output is that of the one-GPU run, with per-stage figures in --json.\n"
    "On one host the stages are started here (--launcher local); across hosts start them with\n"
    "`mpirun -n G flexgen generate --num-gpus G --launcher mpi ...`.";

// What a pipeline stage's process knows about the pipeline.
struct StageContext {
  std::int32_t rank = 0, size = 1;
  std::string launcher;
  std::unique_ptr<SocketChannel> channel;
  int control_fd = -1;
};

}  // namespace

int run_generate(const std::vector<std::string>& args) {
  RunFlags flags;
  std::vector<std::string> prompt_texts;
  TierFlags tier_flags;
  std::int64_t stop_token = -2;  // -2: the model's end token for real models, none for dummy ones

  po::options_description desc("Options", 100);
  desc.add_options()("help,h", "show this help")(
      "prompt", po::value(&prompt_texts)->composing(), "a prompt (repeatable: one sequence each)");
  add_run_options(desc, flags);
  po::options_description tiers = tier_options(tier_flags);
  bool task_times = false;
  bool op_times = false;
  tiers.add_options()("stop-token", po::value(&stop_token),
                      "token id that ends a sequence (default: the model's end token; -1: none)")(
      "task-times", po::bool_switch(&task_times),
      "time every task (CUDA events on the GPU) and add the busy seconds per task kind to --json")(
      "op-times", po::bool_switch(&op_times),
      "CUDA backend: time every op of the compute tasks with CUDA events; GPU seconds per op kind and "
      "phase, and the GPU's idle time, in --json (op_times) or on stderr");
  std::int32_t num_gpus = 1;
  std::string launcher = "local", stage_endpoint;
  po::options_description pipe("Pipeline parallelism (docs/multi-gpu.md)", 100);
  pipe.add_options()("num-gpus", po::value(&num_gpus)->default_value(1),
                     "GPUs (pipeline stages, one process each; at most the number of decoder layers)")(
      "launcher", po::value(&launcher)->default_value(launcher),
      "local: start the stage processes here; mpi: this process is one rank of `mpirun -n G`");
  desc.add(tiers).add(pipe);
  po::options_description hidden;
  hidden.add_options()("pipeline-stage", po::value(&stage_endpoint), "internal: a stage process's end points");
  po::options_description all;
  all.add(desc).add(hidden);
  po::variables_map vm;
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h") {
      std::cout << kUsage << "\n\n" << desc << "\n";
      return 0;
    }
  }
  if (!parse_command_line(args, kUsage, all, vm)) return 0;
  flags.gpu_batch_size_given = vm.count("gpu-batch-size") > 0;
  FLEXGEN_REQUIRE(num_gpus >= 1, "--num-gpus must be at least 1 (got ", num_gpus, ")");
  FLEXGEN_REQUIRE(launcher == "local" || launcher == "mpi", "--launcher must be local or mpi (got '", launcher, "')");
  if (launcher == "local" && num_gpus > 1 && stage_endpoint.empty()) {
    StageLaunch launch;
    launch.num_stages = num_gpus;
    launch.args = args;
    run_stage_processes(launch);  // stage 0 printed the output
    return 0;
  }
  std::unique_ptr<StageContext> stage;
  if (!stage_endpoint.empty()) {
    StageEndpoint ep = parse_endpoint(stage_endpoint);
    FLEXGEN_REQUIRE(ep.size == num_gpus, "pipeline: stage end points of ", ep.size, " stages for --num-gpus ", num_gpus);
    stage = std::make_unique<StageContext>();
    stage->rank = ep.rank;
    stage->size = ep.size;
    stage->launcher = "local";
    stage->control_fd = ep.control_fd;
    stage->channel = std::make_unique<SocketChannel>(ep.rank, ep.peer_fds);
  } else if (launcher == "mpi") {
    MpiStage m = mpi_bootstrap(num_gpus);
    stage = std::make_unique<StageContext>();
    stage->rank = m.rank;
    stage->size = m.size;
    stage->launcher = "mpi";
    stage->channel = std::make_unique<SocketChannel>(m.rank, m.peer_fds);
  }
  // The run (the whole model, or this stage's part of it); stage 0 prints the output.
  auto body = [&]() -> int {

    RuntimeOptions options = runtime_options_from(tier_flags);
    const ScheduleKind kind = options.schedule;
    options.keep_task_timings = task_times;
    options.keep_op_timings = op_times;
    const Backend backend = parse_backend(tier_flags.backend);
    FLEXGEN_REQUIRE(!op_times || backend == Backend::kCuda,
                    "--op-times times the CUDA backend's ops; this run uses the host backend (--backend cuda)");

    FLEXGEN_REQUIRE(flags.gen_len >= 1, "--gen-len must be at least 1 (got ", flags.gen_len, ")");
    FLEXGEN_REQUIRE(flags.prompt_len >= 1, "--prompt-len must be at least 1 (got ", flags.prompt_len, ")");
    const SamplingConfig sampling = sampling_from_flags(flags);
    const std::int64_t num_prompts = prompt_texts.empty() ? 1 : static_cast<std::int64_t>(prompt_texts.size());
    const Policy policy = policy_from_flags(flags, num_prompts);
    FLEXGEN_REQUIRE(policy.block_size() >= num_prompts, num_prompts, " prompts do not fit a block of ",
                    policy.gpu_batch_size(), " x ", policy.num_gpu_batches(),
                    " sequences; raise --gpu-batch-size or --num-gpu-batches");

    LoadedModel model = load_model(flags.model, flags.seed, backend);
    const ModelSpec& spec = model.spec;

    // Prompts as token ids (OPT's tokenizer starts every prompt with </s>, LLaMA's with <s>).
    std::vector<std::vector<std::int32_t>> distinct;
    std::int64_t prompt_len = flags.prompt_len;
    if (!prompt_texts.empty()) {
      FLEXGEN_REQUIRE(model.tokenizer != nullptr, "--prompt needs the model's tokenizer: ",
                      model.tokenizer_unavailable);
      std::int64_t longest = 0;
      for (const std::string& text : prompt_texts) {
        std::vector<std::int32_t> ids;
        if (model.tokenizer->add_bos()) ids.push_back(static_cast<std::int32_t>(spec.bos_token_id));
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

    const Plan plan = make_plan(spec, workload, policy);  // refuses a run too large before the block is built
    std::vector<std::vector<std::int32_t>> block;
    for (std::int64_t i = 0; i < policy.block_size(); ++i) block.push_back(distinct[static_cast<std::size_t>(i % num_prompts)]);
    if (stage) {
      options.stage = std::make_shared<PipelineStage>(
          make_pipeline_stage(plan, stage->size, stage->rank, stage->channel.get()));
    }
    const std::unique_ptr<Runtime> runtime = make_runtime(backend, plan, model.source(), options);
    const RunReport report = runtime->generate(block, sampling, stop);

    // A pipeline: every stage's figures go to stage 0, which prints the run.
    nlohmann::json pipeline_json;
    if (stage) {
      const PipelineStage& ps = *options.stage;
      nlohmann::json mine = {
          {"stage", stage->rank},
          {"layers", {ps.layers.first, ps.layers.last}},
          {"device", device_name(backend)},
          {"prefill_s", report.prefill_s},
          {"decode_s", report.decode_s},
          {"peak_memory", tier_json(report.peak)},
          {"planned_memory", tier_json(report.planned)},
          {"moved", link_json(report.moved)},
          {"bytes_sent", stage->channel->bytes_sent()},
          {"bytes_received", stage->channel->bytes_received()},
          {"tasks_skipped", report.tasks_skipped},
      };
      if (stage->rank != 0) {
        const std::string text = mine.dump();
        const auto payload = std::as_bytes(std::span<const char>(text.data(), text.size()));
        stage->channel->send(0, make_header(MessageKind::kReport, 0, stage->rank, payload), payload);
        return 0;
      }
      nlohmann::json stages = nlohmann::json::array({mine});
      for (std::int32_t r = 1; r < stage->size; ++r) {
        const Message m = stage->channel->recv(r);
        FLEXGEN_REQUIRE(m.header.kind == MessageKind::kReport && m.header.batch == r,
                        "pipeline protocol error: stage 0 expected the report of stage ", r, ", got ", describe(m.header));
        stages.push_back(nlohmann::json::parse(
            std::string(reinterpret_cast<const char*>(m.payload.data()), m.payload.size())));
      }
      pipeline_json = {{"num_gpus", stage->size}, {"launcher", stage->launcher}, {"stages", stages}};
    }

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
        {"backend", backend_name(backend)},
        {"device", device_name(backend)},
        {"schedule", schedule_kind_name(kind)},
        {"prompt_len", prompt_len},
        {"gen_len", flags.gen_len},
        {"num_sequences", policy.block_size()},
        {"policy", policy.to_json()},
        {"sequences", seqs},
    };
    j.update(report_json(report));
    if (task_times) j["task_times"] = task_time_json(report, runtime->schedule());
    if (op_times) j["op_times"] = op_time_json(report);
    if (stage) j["pipeline"] = pipeline_json;
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
  std::cerr << "flexgen generate: " << spec.name << " (" << backend_name(backend) << " backend), " << policy.block_size() << " sequences x "
            << flags.gen_len << " tokens, " << schedule_kind_name(kind) << "; prefill " << report.prefill_s
            << " s, decode " << report.decode_s << " s, " << report.throughput_tok_s << " tok/s; peak gpu "
            << format_bytes(report.peak[Tier::kGpu]) << ", cpu " << format_bytes(report.peak[Tier::kCpu])
            << ", disk " << format_bytes(report.peak[Tier::kDisk])
            << (stage ? str_cat(" (stage 0 of a pipeline of ", stage->size, ")") : std::string()) << "\n";
  if (op_times) {
    const nlohmann::json ops = op_time_json(report);
    for (const char* phase : {"prefill", "decode"}) {
      const nlohmann::json& p = ops[phase];
      std::cerr << "flexgen generate: " << phase << " wall " << p["wall_s"].get<double>() << " s, GPU busy "
                << p["busy_s"].get<double>() << " s, idle " << p["idle_s"].get<double>() << " s\n";
      for (const auto& [name, o] : p["ops"].items()) {
        std::cerr << "  " << name << ": " << o["calls"].get<std::int64_t>() << " calls, " << o["busy_s"].get<double>()
                  << " s\n";
      }
    }
  }
  return 0;
  };

  if (!stage) return body();
  int rc = 0;
  try {
    rc = body();
    std::cout.flush();
    stage->channel->finish();  // every message delivered, every peer done
  } catch (const std::exception& e) {
    const bool lost = stage->channel->peer_lost();
    stage->channel->abort();
    if (stage->control_fd >= 0) {  // the launcher reports it (one line for the whole run)
      report_stage_failure(stage->control_fd, e.what(), lost);
      return 1;
    }
    fail("stage ", stage->rank, ": ", e.what());
  }
  if (stage->launcher == "mpi") mpi_finish();
  return rc;
}

}  // namespace flexgen::cli
