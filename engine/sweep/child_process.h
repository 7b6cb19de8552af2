#pragma once
// Running a program as a child process and capturing what it prints: how `flexgen sweep` runs each
// engine point (a crash, an out-of-memory kill or a CUDA error in one point ends that point, not
// the sweep).
#include <string>
#include <vector>

namespace flexgen {

struct ChildResult {
  bool started = false;     // false: the program could not be started (error says why)
  int exit_code = -1;       // when it exited
  int signal = 0;           // when a signal ended it
  bool timed_out = false;   // it ran past the timeout and was stopped
  std::string out, err;     // what it printed
  std::string error;        // why it could not be started
  double wall_s = 0;

  bool exited_ok() const { return started && !timed_out && signal == 0 && exit_code == 0; }
  // One line saying how it ended: "exit status 1: <last line of stderr>", "killed by signal 9
  // (SIGKILL)", "timed out after 600 s", or the start error.
  std::string failure() const;
};

// Runs argv[0] (searched on PATH when it has no '/') with argv, stdin from /dev/null, stdout and
// stderr captured. With timeout_s > 0 the child gets SIGTERM at the timeout and SIGKILL 10 s later.
ChildResult run_child(const std::vector<std::string>& argv, double timeout_s = 0);

// The path of the running executable (/proc/self/exe).
std::string self_executable();

}  // namespace flexgen
