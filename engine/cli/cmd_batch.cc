// flexgen batch: completions for a file of prompts, in blocks, resumable (docs/batch.md).
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include "engine/batch/blocks.h"
#include "engine/batch/completion.h"
#include "engine/batch/output_file.h"
#include "engine/batch/progress.h"
#include "engine/batch/prompt_file.h"
#include "engine/cli/command.h"
#include "engine/cli/policy_options.h"
#include "engine/cli/run_setup.h"
#include "engine/core/error.h"
#include "engine/core/format.h"
#include "engine/core/input_lookup.h"
#include "engine/runtime/runtime.h"
#include "engine/search/policy_search.h"
#include "simulator/predict.h"

namespace po = boost::program_options;

namespace flexgen::cli {

namespace {

constexpr const char* kUsage =
    "usage: flexgen batch --model MODEL --input PROMPTS.jsonl --output COMPLETIONS.jsonl [options]\n\n"
    "Generates a completion for every prompt of a JSONL file through the offloading runtime. Each\n"
    "input line is an object {\"id\": ..., \"prompt\": text or [token ids], optional \"max_new_tokens\",\n"
    "\"stop\", \"do_sample\", \"temperature\", \"top_k\", \"top_p\", \"seed\"}; each output line\n"
    "{\"id\", \"text\", \"tokens\", \"finish_reason\", \"prompt_tokens\", \"completion_tokens\"}.\n"
    "Prompts are grouped into blocks of gpu batch size x gpu batches by sampling settings and length;\n"
    "one placement of the weights serves every block. Lines are written as each block finishes; a\n"
    "rerun with the same output file skips the ids already there. --gen-len is the default\n"
    "max_new_tokens, the sampling flags the default sampling settings; with --search the policy is\n"
    "the policy search's for the largest block on --hardware. Progress and a summary go to stderr\n"
    "(--json: the summary as one JSON object on stdout). See docs/batch.md.";

constexpr std::int64_t kDefaultGpuBatch = 16;
constexpr std::size_t kBadLinesShown = 50;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A number with `digits` decimals, for the terminal.
std::string fixed(double value, int digits) {
  char out[64];
  std::snprintf(out, sizeof out, "%.*f", digits, value);
  return out;
}

Bytes peak_rss_bytes() {
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<Bytes>(usage.ru_maxrss) * 1024;  // Linux: KiB
}

// The policy search's choice for the largest block (the longest prompt, the largest
// max_new_tokens). A block larger than the file only adds filler, so for each number of gpu
// batches 1, 2, 4, ... up to the number of prompts N the search looks for gpu batch sizes up to
// N / batches, and the policy that finishes the file soonest by the cost model (blocks needed x
// predicted block time) wins. --gpu-batch-size and --num-gpu-batches, when given, are kept.
Policy searched_policy(const RunFlags& flags, const po::variables_map& vm, const TierFlags& tiers,
                       const ModelSpec& spec, const std::vector<BatchPrompt>& prompts) {
  FLEXGEN_REQUIRE(!tiers.hardware.empty(), "--search needs --hardware FILE (the machine to search for)");
  const HardwareSpec hw = load_hardware(tiers.hardware);
  Workload w;
  w.prompt_len = 1;
  w.gen_len = 1;
  for (const BatchPrompt& p : prompts) {
    w.prompt_len = std::max<std::int64_t>(w.prompt_len, static_cast<std::int64_t>(p.tokens.size()));
    w.gen_len = std::max(w.gen_len, p.max_new_tokens);
  }
  // Blocks never exceed the context (blocks.h), so neither does the largest one.
  w.gen_len = std::max<std::int64_t>(1, std::min(w.gen_len, spec.max_positions - w.prompt_len));
  SearchOptions options;
  if (flags.gpu_batch_size_given) options.gpu_batch_size = flags.gpu_batch_size;
  options.compress_weight = flags.compress_weight;
  options.compress_cache = flags.compress_cache;
  options.cpu_cache_compute = flags.cpu_cache_compute ? SearchChoice::kOn : SearchChoice::kSearch;
  options.attn_sparsity = flags.attn_sparsity;
  const auto n = static_cast<std::int64_t>(prompts.size());
  std::vector<std::int64_t> batch_counts;
  if (vm.count("num-gpu-batches") && !vm["num-gpu-batches"].defaulted()) {
    batch_counts = {flags.num_gpu_batches};
  } else {
    for (std::int64_t k = 1; k <= n; k *= 2) batch_counts.push_back(k);
  }
  std::optional<Policy> best;
  double best_s = 0;
  std::string last_error;
  for (std::int64_t k : batch_counts) {
    options.num_gpu_batches = k;
    options.max_gpu_batch_size = std::max<std::int64_t>(1, n / k);
    options.reprice = [&](const Policy& policy) { return simulated_estimate(spec, w, policy, hw); };
    try {
      const SearchResult result = search_policy(spec, w, hw, options);
      if (result.candidates.empty()) continue;
      const SearchCandidate& c = result.candidates.front();
      const std::int64_t blocks = (n + c.policy.block_size() - 1) / c.policy.block_size();
      const double file_s = static_cast<double>(blocks) * c.estimate.total_s;
      if (!best || file_s < best_s) {
        best = c.policy;
        best_s = file_s;
      }
    } catch (const Error& e) {
      last_error = e.what();
    }
  }
  FLEXGEN_REQUIRE(best.has_value(), "--search found no policy for prompts of up to ", w.prompt_len, " tokens and ",
                  w.gen_len, " new tokens on ", tiers.hardware, last_error.empty() ? "" : ": ", last_error);
  return *best;
}

// Reports bad lines on stderr (prompts_to_run then refuses them unless --skip-bad).
void report_bad_lines(const PromptFile& file, bool skip_bad) {
  for (std::size_t i = 0; i < file.bad.size() && i < kBadLinesShown; ++i) {
    std::cerr << "flexgen batch: " << (skip_bad ? "skipped: " : "bad line: ") << file.bad[i].message << "\n";
  }
  if (file.bad.size() > kBadLinesShown) {
    std::cerr << "flexgen batch: ... and " << file.bad.size() - kBadLinesShown << " more bad lines\n";
  }
}

}  // namespace

int run_batch(const std::vector<std::string>& args) {
  const auto t_start = std::chrono::steady_clock::now();
  RunFlags flags;
  TierFlags tier_flags;
  std::string input, output;
  bool skip_bad = false, search = false, pad_longest = false;
  std::int64_t stop_token = -2;  // -2: the model's end token for real models, none for dummy ones

  po::options_description desc("Options", 100);
  po::options_description batch("Batch", 100);
  batch.add_options()
      ("help,h", "show this help")
      ("input", po::value(&input)->required(), "prompts, one JSON object a line (JSONL)")
      ("output", po::value(&output)->required(),
       "completions, one JSON object a line; appended to, skipping the ids it already holds")
      ("skip-bad", po::bool_switch(&skip_bad), "skip bad input lines (reported) instead of refusing the run")
      ("pad-to-longest", po::bool_switch(&pad_longest),
       "pad every block to the file's longest prompt (FlexGen's fixed prompt length), for comparison")
      ("search", po::bool_switch(&search),
       "choose the policy with the policy search for the largest block on --hardware")
      ("stop-token", po::value(&stop_token),
       "token id that ends a sequence (default: the model's end token; -1: none)");
  desc.add(batch);
  add_run_options(desc, flags);
  desc.add(tier_options(tier_flags));
  po::variables_map vm;
  if (!parse_command_line(args, kUsage, desc, vm)) return 0;
  flags.gpu_batch_size_given = vm.count("gpu-batch-size") > 0;
  FLEXGEN_REQUIRE(vm["prompt-len"].defaulted(),
                  "--prompt-len does not apply to flexgen batch: prompt lengths come from the input");
  FLEXGEN_REQUIRE(flags.gen_len >= 1, "--gen-len must be at least 1 (got ", flags.gen_len, ")");

  const RuntimeOptions options = runtime_options_from(tier_flags);
  const Backend backend = parse_backend(tier_flags.backend);
  PromptDefaults defaults;
  defaults.max_new_tokens = flags.gen_len;
  defaults.sampling = sampling_from_flags(flags);

  LoadedModel model = load_model(flags.model, flags.seed, backend);
  const ModelSpec& spec = model.spec;
  const Tokenizer* tokenizer = model.tokenizer.get();
  std::optional<std::int32_t> stop;
  if (stop_token == -2) {
    if (!model.dummy) stop = static_cast<std::int32_t>(spec.eos_token_id);
  } else if (stop_token >= 0) {
    FLEXGEN_REQUIRE(stop_token < spec.vocab_size, "--stop-token ", stop_token, " is outside the vocabulary");
    stop = static_cast<std::int32_t>(stop_token);
  }

  const PromptFile file = read_prompt_file(input, spec, tokenizer, defaults);
  report_bad_lines(file, skip_bad);
  const std::vector<BatchPrompt>& prompts = prompts_to_run(file, input, skip_bad);

  const Policy policy =
      search ? searched_policy(flags, vm, tier_flags, spec, prompts)
             : policy_from_flags(flags, std::min<std::int64_t>(kDefaultGpuBatch, static_cast<std::int64_t>(prompts.size())));
  // Blocks over the whole file, done prompts included: a resumed run forms the same blocks, so
  // every prompt runs in the same company and slot as in an uninterrupted run.
  BlockPlan blocks = group_into_blocks(prompts, policy.block_size(), spec.max_positions);
  if (pad_longest) pad_to_longest(blocks, prompts, spec.max_positions);

  OutputFile out(output);
  std::vector<std::size_t> to_run;  // blocks with a prompt not yet in the output
  std::int64_t already = 0;
  double work_total = 0;
  for (std::size_t b = 0; b < blocks.blocks.size(); ++b) {
    const PromptBlock& block = blocks.blocks[b];
    const auto done = std::count_if(block.members.begin(), block.members.end(),
                                    [&](std::size_t i) { return out.done_ids().count(prompts[i].key) > 0; });
    already += done;
    if (done < static_cast<std::int64_t>(block.members.size())) {
      to_run.push_back(b);
      work_total += static_cast<double>(block.prompt_len + block.gen_len);
    }
  }
  const auto total = static_cast<std::int64_t>(prompts.size());
  std::cerr << "flexgen batch: " << spec.name << " (" << backend_name(backend) << " backend), " << total
            << " prompts (" << already << " already in " << output << "), " << blocks.blocks.size()
            << " blocks of " << policy.block_size() << " (" << to_run.size() << " to run), padding waste "
            << fixed(blocks.padding.padding_waste() * 100, 1) << "%; policy " << policy.to_string() << "\n";
  if (out.partial_bytes_dropped() > 0) {
    std::cerr << "flexgen batch: dropped an unfinished last line (" << out.partial_bytes_dropped() << " bytes) of "
              << output << "\n";
  }

  RunReport sum;  // over the blocks run: times, tokens and bytes added, peak memory the largest
  PaddingStats padding_run;
  std::int64_t completion_tokens = 0, prompt_tokens = 0, written = 0, decode_tokens = 0;
  std::optional<Plan> plan;
  std::unique_ptr<Runtime> runtime;
  if (!to_run.empty()) {
    Workload workload;
    workload.prompt_len = blocks.max_prompt_len;
    workload.gen_len = blocks.max_total_len - blocks.max_prompt_len;
    workload.num_sequences = policy.block_size();
    workload.sampling = defaults.sampling;
    if (stop) workload.stop_token = *stop;
    plan = make_plan(spec, workload, policy);
    runtime = make_runtime(backend, *plan, model.source(), options);
  }
  const bool tty = isatty(STDERR_FILENO) != 0;
  BatchProgress progress(total, already, work_total);
  const auto t_loop = std::chrono::steady_clock::now();
  for (std::size_t b : to_run) {
    const PromptBlock& block = blocks.blocks[b];
    const RunReport r = runtime->generate(block_inputs(block, prompts, policy.block_size()), block.sampling, stop,
                                          BlockShape{block.prompt_len, block.gen_len});
    // Lines in input order; prompts already in the output (a block cut short before) are not
    // written again.
    std::vector<std::size_t> slots(block.members.size());
    for (std::size_t s = 0; s < slots.size(); ++s) slots[s] = s;
    std::sort(slots.begin(), slots.end(),
              [&](std::size_t x, std::size_t y) { return prompts[block.members[x]].line < prompts[block.members[y]].line; });
    std::vector<std::string> lines;
    std::int64_t block_tokens = 0;
    for (std::size_t s : slots) {
      const BatchPrompt& p = prompts[block.members[s]];
      if (out.done_ids().count(p.key)) continue;
      const Completion c = finish_completion(r.tokens[s], p, stop, tokenizer);
      lines.push_back(completion_line(p, c));
      block_tokens += static_cast<std::int64_t>(c.tokens.size());
      prompt_tokens += static_cast<std::int64_t>(p.tokens.size());
    }
    out.append_block(lines);
    written += static_cast<std::int64_t>(lines.size());
    completion_tokens += block_tokens;
    padding_run.add(block_padding(block, prompts, policy.block_size()));
    sum.prefill_s += r.prefill_s;
    sum.decode_s += r.decode_s;
    sum.total_s += r.total_s;
    sum.generated_tokens += r.generated_tokens;
    decode_tokens += policy.block_size() * (block.gen_len - 1);
    for (Tier t : kAllTiers) {
      sum.peak[t] = std::max(sum.peak[t], r.peak[t]);
      sum.planned[t] = std::max(sum.planned[t], r.planned[t]);
    }
    sum.gpu_device_bytes = std::max(sum.gpu_device_bytes, r.gpu_device_bytes);
    sum.moved.h2d += r.moved.h2d;
    sum.moved.d2h += r.moved.d2h;
    sum.moved.disk_read += r.moved.disk_read;
    sum.moved.disk_write += r.moved.disk_write;
    progress.block_done(static_cast<std::int64_t>(lines.size()), block_tokens,
                        static_cast<double>(block.prompt_len + block.gen_len), seconds_since(t_loop));
    std::cerr << (tty ? "\r" : "") << "flexgen batch: " << progress.line() << (tty ? "   " : "\n") << std::flush;
  }
  if (tty && !to_run.empty()) std::cerr << "\n";
  const double loop_s = seconds_since(t_loop);
  const double wall_s = seconds_since(t_start);
  sum.throughput_tok_s = sum.total_s > 0 ? static_cast<double>(sum.generated_tokens) / sum.total_s : 0;
  sum.decode_throughput_tok_s = sum.decode_s > 0 ? static_cast<double>(decode_tokens) / sum.decode_s : 0;
  const double completion_tok_s = loop_s > 0 ? static_cast<double>(completion_tokens) / loop_s : 0;

  std::cerr << "flexgen batch: done: " << written << " prompts written now, " << already << " already in "
            << output << ", " << file.bad.size() << " bad lines skipped; " << to_run.size() << " blocks run\n"
            << "  tokens: " << prompt_tokens << " prompt, " << completion_tokens << " completion, "
            << sum.generated_tokens << " computed (block size x gen_len)\n"
            << "  wall " << fixed(wall_s, 2) << " s (blocks " << fixed(loop_s, 2) << " s), "
            << fixed(completion_tok_s, 1) << " completion tok/s, "
            << fixed(loop_s > 0 ? static_cast<double>(sum.generated_tokens) / loop_s : 0, 1) << " computed tok/s\n"
            << "  padding waste " << fixed(padding_run.padding_waste() * 100, 1)
            << "% of prompt positions, generation waste " << fixed(padding_run.generation_waste() * 100, 1)
            << "% of decode positions (blocks run now)\n"
            << "  peak memory: gpu " << format_bytes(sum.peak[Tier::kGpu]) << ", cpu "
            << format_bytes(sum.peak[Tier::kCpu]) << ", disk " << format_bytes(sum.peak[Tier::kDisk])
            << "; host process " << format_bytes(peak_rss_bytes()) << "\n";
  if (flags.json) {
    nlohmann::json j = {
        {"model", spec.name},
        {"dummy_weights", model.dummy},
        {"backend", backend_name(backend)},
        {"schedule", schedule_kind_name(options.schedule)},
        {"policy", policy.to_json()},
        {"input", input},
        {"output", output},
        {"prompts", total},
        {"bad_lines", file.bad.size()},
        {"already_done", already},
        {"written", written},
        {"blocks", blocks.blocks.size()},
        {"blocks_run", to_run.size()},
        {"block_size", policy.block_size()},
        {"plan_prompt_len", blocks.max_prompt_len},
        {"plan_gen_len", blocks.max_total_len - blocks.max_prompt_len},
        {"prompt_tokens", prompt_tokens},
        {"completion_tokens", completion_tokens},
        {"wall_s", wall_s},
        {"blocks_s", loop_s},
        {"completion_tok_s", completion_tok_s},
        {"padding_waste", padding_run.padding_waste()},
        {"generation_waste", padding_run.generation_waste()},
        {"file_padding_waste", blocks.padding.padding_waste()},
        {"peak_rss_bytes", peak_rss_bytes()},
    };
    j.update(report_json(sum));
    std::cout << j.dump(1) << "\n";
  }
  return 0;
}

}  // namespace flexgen::cli
