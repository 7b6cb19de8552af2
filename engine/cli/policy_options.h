#pragma once
// Command-line flags shared by every command that takes a model, a workload and a policy
// (generate now; simulate, search and sweep later). Named as in FlexGen where FlexGen has them.
#include <string>
#include <vector>

#include <boost/program_options/options_description.hpp>
#include <boost/program_options/positional_options.hpp>
#include <boost/program_options/variables_map.hpp>

#include "engine/core/policy.h"
#include "engine/core/workload.h"

namespace flexgen::cli {

struct RunFlags {
  std::string model;
  std::int64_t prompt_len = 512;
  std::int64_t gen_len = 32;
  std::int64_t gpu_batch_size = 1;
  bool gpu_batch_size_given = false;  // set by parse_command_line
  std::int64_t num_gpu_batches = 1;
  std::vector<double> percent = {100, 0, 100, 0, 100, 0};
  bool overlap = true;
  bool pin_weight = true;
  bool cpu_cache_compute = false;
  bool compress_weight = false;
  bool compress_cache = false;
  double attn_sparsity = 1.0;
  bool do_sample = false;
  float temperature = 1.0f;
  int top_k = 0;
  float top_p = 1.0f;
  std::uint64_t seed = 0;
  bool json = false;
};

// Adds the model/workload/policy/sampling flags to `desc`, storing into `flags`.
void add_run_options(boost::program_options::options_description& desc, RunFlags& flags);

// Builds the validated policy; `default_batch` stands in for an unset --gpu-batch-size.
Policy policy_from_flags(const RunFlags& flags, std::int64_t default_batch);
SamplingConfig sampling_from_flags(const RunFlags& flags);

// Parses args[1..] into `vm`; returns false after printing help for --help.
bool parse_command_line(const std::vector<std::string>& args, const char* usage,
                        const boost::program_options::options_description& desc,
                        boost::program_options::variables_map& vm,
                        const boost::program_options::positional_options_description* positional =
                            nullptr);

}  // namespace flexgen::cli
