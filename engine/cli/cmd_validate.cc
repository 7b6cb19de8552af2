// flexgen validate: the cost model against measured engine runs (docs/experiments.md).
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "engine/cli/command.h"
#include "engine/cli/policy_options.h"
#include "engine/core/error.h"
#include "engine/core/input_lookup.h"
#include "simulator/validation.h"

namespace po = boost::program_options;

namespace flexgen::cli {
namespace {

constexpr const char* kUsage =
    "usage: flexgen validate RESULTS.jsonl [RESULTS.jsonl ...] [options]\n\n"
    "Predicts every successful engine run of `flexgen sweep` results again with the current cost\n"
    "model (the run's own plan and schedule, timed on its hardware file, or on --hardware) and\n"
    "prints, per run, the measured and predicted throughput and their relative error, the prefill\n"
    "and decode errors and the task kind whose predicted busy time is furthest from the measured\n"
    "one; then the mean absolute percentage error, the worst runs, and measured vs predicted busy\n"
    "time per task kind over all runs. --fail-above makes the exit status 3 when the mean absolute\n"
    "percentage error exceeds the given percent.";

}  // namespace

int run_validate(const std::vector<std::string>& args) {
  std::vector<std::string> files;
  std::string hardware;
  bool json = false;
  std::size_t worst = 3;
  double fail_above = -1;
  po::options_description desc("Options", 100);
  desc.add_options()
      ("help,h", "show this help")
      ("results", po::value(&files)->composing(), "results files (JSONL)")
      ("hardware", po::value(&hardware), "predict on this hardware file instead of each run's own")
      ("worst", po::value(&worst)->default_value(worst), "how many of the worst runs to name")
      ("fail-above", po::value(&fail_above), "exit status 3 when the MAPE exceeds this percent")
      ("json", po::bool_switch(&json), "print one JSON object instead of text");
  po::positional_options_description positional;
  positional.add("results", -1);
  po::variables_map vm;
  if (!parse_command_line(args, kUsage, desc, vm, &positional)) return 0;
  FLEXGEN_REQUIRE(!files.empty(), "give at least one results file (see flexgen validate --help)");
  std::optional<HardwareSpec> hw;
  if (!hardware.empty()) hw = load_hardware(hardware);
  const ValidationReport report = validate_results(files, hw);
  if (json) {
    std::cout << validation_json(report).dump(1) << "\n";
  } else {
    std::cout << validation_text(report, worst);
  }
  if (fail_above >= 0 && !report.runs.empty() && 100 * report.mape > fail_above) return 3;
  return 0;
}

}  // namespace flexgen::cli
