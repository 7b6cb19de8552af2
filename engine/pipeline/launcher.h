#pragma once
// Starting the stage processes of a pipeline on one host (`flexgen generate --num-gpus G`, the
// local launcher; docs/multi-gpu.md). The launcher makes the full mesh of UNIX socket pairs between
// the G stages and one control socket to each, then starts G copies of this program (fork + exec
// of /proc/self/exe) with the same command line and a hidden option naming the stage's end points.
// Each stage builds its runtime for its layers, runs, and stage 0 prints the output of the run.
// The launcher prints nothing itself: it waits for every stage to end, and when one fails it ends
// the others and reports one line (the stage that failed first and why, or that it died).
#include <cstdint>
#include <string>
#include <vector>

namespace flexgen {

// A stage's end points, as passed to its process: "RANK/SIZE/CONTROL_FD/FD0,FD1,..." (the fd of
// the connection to each stage, -1 for itself; CONTROL_FD -1 when there is no launcher).
struct StageEndpoint {
  std::int32_t rank = 0;
  std::int32_t size = 1;
  int control_fd = -1;
  std::vector<int> peer_fds;
};
std::string endpoint_to_string(const StageEndpoint& endpoint);
// Throws flexgen::Error for a malformed text.
StageEndpoint parse_endpoint(const std::string& text);

struct StageLaunch {
  std::int32_t num_stages = 1;
  // The command line of every stage after the program name (e.g. "generate", "--model", ...); the
  // launcher appends `endpoint_option` and the stage's endpoint_to_string.
  std::vector<std::string> args;
  std::string endpoint_option = "--pipeline-stage";
  // The program to run (default: this one, /proc/self/exe).
  std::string program;
  // Seconds the others get to end by themselves after a stage failed, before they are killed.
  double grace_s = 3.0;
};

// Runs the stages and waits for them. Returns normally when every stage exited with status 0;
// throws flexgen::Error with one line otherwise ("stage 1: <its error>", "stage 2 died (killed by
// signal 9)"). Every stage process has ended when it returns or throws. The stages' environment is
// this process's, with NCCL_NVLS_ENABLE=0 (never NVLink multicast); in test builds FLEXGEN_FAULT
// goes only to stage FLEXGEN_FAULT_STAGE when that is set.
void run_stage_processes(const StageLaunch& launch);

// In a stage process: tells the launcher why this stage fails (one line), before it exits.
// `lost_peer`: the failure is another stage's having gone (the launcher then prefers the other
// stage's own report). Never throws.
void report_stage_failure(int control_fd, const std::string& what, bool lost_peer);

}  // namespace flexgen
