// flexgen: the command-line front end. `flexgen <command> --help` describes each command.
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include <boost/program_options/errors.hpp>

#include "engine/cli/command.h"
#include "engine/core/error.h"
#include "engine/runtime/fault_injection.h"

namespace flexgen::cli {

const std::vector<Command>& commands() {
  static const std::vector<Command> kCommands = {
      {"generate", "generate text with an OPT model (real weights or dummy weights)", run_generate},
      {"batch", "completions for a file of prompts (JSONL), in blocks, resumable", run_batch},
      {"search", "find the best policy for a model on a machine (cost model + LP)", run_search},
      {"simulate", "replay the schedule on a hardware spec with the cost model (what-if)", run_simulate},
      {"profile", "measure this machine into a hardware spec (experiments/hardware/*.json)", run_profile},
      {"sweep", "run a sweep file (a grid of runs) on the engine or the simulator, resumable", run_sweep},
      {"validate", "the cost model against measured engine runs (error per run, MAPE, task kinds)", run_validate},
  };
  return kCommands;
}

namespace {

void print_usage(std::ostream& out) {
  out << "usage: flexgen <command> [options]\n\n"
         "High-throughput offloaded LLM inference after FlexGen (Sheng et al., ICML 2023).\n\n"
         "commands:\n";
  for (const Command& c : commands()) {
    std::string name = c.name;
    name.resize(12, ' ');
    out << "  " << name << c.summary << "\n";
  }
  out << "\n`flexgen <command> --help` shows the options of a command.\n";
}

}  // namespace
}  // namespace flexgen::cli

int main(int argc, char** argv) {
  using namespace flexgen::cli;
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    print_usage(std::cerr);
    return 2;
  }
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    print_usage(std::cout);
    return 0;
  }
  for (const Command& c : commands()) {
    if (args[0] != c.name) continue;
    try {
      flexgen::fault::arm_from_environment();  // FLEXGEN_FAULT: tests only (fault_injection.h)
      return c.run(args);
    } catch (const flexgen::Error& e) {
      std::cout.flush();
      std::cerr << "flexgen " << c.name << ": error: " << e.what() << "\n";
      return 1;
    } catch (const boost::program_options::error& e) {
      std::cout.flush();
      std::cerr << "flexgen " << c.name << ": error: " << e.what() << " (see flexgen " << c.name
                << " --help)\n";
      return 2;
    } catch (const std::bad_alloc&) {
      std::cerr << "flexgen " << c.name << ": error: out of host memory\n";
      return 1;
    } catch (const std::exception& e) {
      std::cerr << "flexgen " << c.name << ": error: " << e.what() << "\n";
      return 1;
    }
  }
  std::cerr << "flexgen: error: unknown command '" << args[0] << "' (see flexgen --help)\n";
  return 2;
}
