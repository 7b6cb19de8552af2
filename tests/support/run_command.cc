#include "support/run_command.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace flexgen::testing {

namespace {

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

namespace {

CommandResult run_shell(const std::string& prefix, const std::string& args) {
  static int counter = 0;
  const auto dir = std::filesystem::temp_directory_path() /
                   ("flexgen-cli-test-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
  std::filesystem::create_directories(dir);
  const std::string cmd = prefix + std::string(FLEXGEN_CLI_PATH) + " " + args + " >" + (dir / "out").string() +
                          " 2>" + (dir / "err").string() + " </dev/null";
  const int status = std::system(cmd.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  r.out = slurp(dir / "out");
  r.err = slurp(dir / "err");
  std::filesystem::remove_all(dir);
  return r;
}

}  // namespace

CommandResult run_flexgen(const std::string& args) { return run_shell("", args); }

CommandResult run_flexgen_env(const std::string& env, const std::string& args, int timeout_s) {
  return run_shell("env " + env + " timeout " + std::to_string(timeout_s) + " ", args);
}

}  // namespace flexgen::testing
