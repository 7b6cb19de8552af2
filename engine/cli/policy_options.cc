#include "engine/cli/policy_options.h"

#include <iostream>

#include <boost/program_options.hpp>

#include "engine/core/error.h"

namespace po = boost::program_options;

namespace flexgen::cli {

void add_run_options(po::options_description& desc, RunFlags& f) {
  po::options_description model("Model and workload", 100);
  model.add_options()
      ("model", po::value(&f.model)->required(),
       "a model directory (HF config.json + safetensors + vocab.json/merges.txt or tokenizer.model) "
       "or a table name (opt-125m ... opt-175b, llama-2-7b ... llama-3-70b) for seeded dummy weights")
      ("prompt-len", po::value(&f.prompt_len)->default_value(f.prompt_len),
       "prompt length in tokens for dummy prompts")
      ("gen-len", po::value(&f.gen_len)->default_value(f.gen_len), "tokens to generate")
      ("json", po::bool_switch(&f.json), "print one JSON object instead of text");
  po::options_description policy("Policy (as in FlexGen)", 100);
  policy.add_options()
      ("gpu-batch-size", po::value(&f.gpu_batch_size),
       "sequences per GPU batch (default: the number of prompts, or 1)")
      ("num-gpu-batches", po::value(&f.num_gpu_batches)->default_value(f.num_gpu_batches),
       "GPU batches per block (zig-zag block size = gpu batch size x this)")
      ("percent", po::value(&f.percent)->multitoken(),
       "six numbers: weights on GPU, weights on CPU, cache on GPU, cache on CPU, activations on "
       "GPU, activations on CPU (the rest of each goes to disk); default 100 0 100 0 100 0")
      ("overlap", po::value(&f.overlap)->default_value(f.overlap, f.overlap ? "true" : "false"),
       "overlap I/O with compute (true/false)")
      ("pin-weight", po::value(&f.pin_weight)->default_value(f.pin_weight, f.pin_weight ? "true" : "false"),
       "keep CPU-tier weights in pinned memory (true/false)")
      ("cpu-cache-compute", po::bool_switch(&f.cpu_cache_compute),
       "run decode attention on the CPU when the cache lives there")
      ("compress-weight", po::bool_switch(&f.compress_weight), "4-bit group-wise weights")
      ("compress-cache", po::bool_switch(&f.compress_cache), "4-bit group-wise KV cache")
      ("attn-sparsity", po::value(&f.attn_sparsity)->default_value(f.attn_sparsity),
       "fraction of cached positions kept by top-k sparse attention, in (0, 1]");
  po::options_description sampling("Sampling", 100);
  sampling.add_options()
      ("do-sample", po::bool_switch(&f.do_sample), "sample instead of greedy decoding")
      ("temperature", po::value(&f.temperature)->default_value(f.temperature), "sampling temperature")
      ("top-k", po::value(&f.top_k)->default_value(f.top_k), "keep the k most likely tokens (0: off)")
      ("top-p", po::value(&f.top_p)->default_value(f.top_p), "nucleus sampling mass (1: off)")
      ("seed", po::value(&f.seed)->default_value(f.seed), "seed for sampling and dummy data");
  desc.add(model).add(policy).add(sampling);
}

Policy policy_from_flags(const RunFlags& f, std::int64_t default_batch) {
  FLEXGEN_REQUIRE(f.percent.size() == 6, "invalid policy: --percent takes six numbers (got ",
                  f.percent.size(), ")");
  PolicyConfig config;
  config.gpu_batch_size = f.gpu_batch_size_given ? f.gpu_batch_size : default_batch;
  config.num_gpu_batches = f.num_gpu_batches;
  config.set_percent({f.percent[0], f.percent[1], f.percent[2], f.percent[3], f.percent[4], f.percent[5]});
  config.overlap = f.overlap;
  config.pin_weight = f.pin_weight;
  config.cpu_cache_compute = f.cpu_cache_compute;
  config.compress_weight = f.compress_weight;
  config.compress_cache = f.compress_cache;
  config.attn_sparsity = f.attn_sparsity;
  return Policy::create(config);
}

SamplingConfig sampling_from_flags(const RunFlags& f) {
  SamplingConfig s;
  s.do_sample = f.do_sample;
  s.temperature = f.temperature;
  s.top_k = f.top_k;
  s.top_p = f.top_p;
  s.seed = f.seed;
  s.validate();
  return s;
}

bool parse_command_line(const std::vector<std::string>& args, const char* usage,
                        const po::options_description& desc, po::variables_map& vm,
                        const po::positional_options_description* positional) {
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h") {
      std::cout << usage << "\n\n" << desc << "\n";
      return false;
    }
  }
  std::vector<std::string> rest(args.begin() + 1, args.end());
  po::command_line_parser parser(rest);
  parser.options(desc);
  if (positional) parser.positional(*positional);
  po::store(parser.run(), vm);
  po::notify(vm);
  return true;
}

}  // namespace flexgen::cli
