#pragma once
// Runs the flexgen command line in a child process and captures what it printed.
#include <string>

namespace flexgen::testing {

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs `FLEXGEN_CLI_PATH <args>` through /bin/sh (args are shell words, quoted by the caller).
CommandResult run_flexgen(const std::string& args);

// The same with environment assignments `env` (shell words, e.g. "FLEXGEN_FAULT='disk_read:fail'"),
// stopped after `timeout_s` seconds (exit code 124 then).
CommandResult run_flexgen_env(const std::string& env, const std::string& args, int timeout_s);

// Single-quotes a string for /bin/sh.
std::string shell_quote(const std::string& s);

}  // namespace flexgen::testing
