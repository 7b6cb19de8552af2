#pragma once
// The subcommands of the `flexgen` front end. Each lives in its own cmd_*.cc and registers here.
#include <string>
#include <vector>

namespace flexgen::cli {

// Runs a subcommand on its own arguments (argv[0] is the subcommand's name). Returns the exit
// status; throws flexgen::Error (reported by main as one line) or boost::program_options errors.
using CommandFn = int (*)(const std::vector<std::string>& args);

struct Command {
  const char* name;
  const char* summary;
  CommandFn run;
};

const std::vector<Command>& commands();

int run_generate(const std::vector<std::string>& args);
int run_batch(const std::vector<std::string>& args);
int run_search(const std::vector<std::string>& args);
int run_profile(const std::vector<std::string>& args);
int run_simulate(const std::vector<std::string>& args);
int run_sweep(const std::vector<std::string>& args);
int run_validate(const std::vector<std::string>& args);

}  // namespace flexgen::cli
