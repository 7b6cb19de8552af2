// The local launcher with stand-in stage programs (/bin/sh scripts): what it passes to each stage
// (its end points, NCCL_NVLS_ENABLE=0), and the one line it reports when a stage fails, dies or
// leaves the others hanging.
#include <chrono>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/core/error.h"
#include "engine/pipeline/launcher.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// Runs `script` as every stage: $1 is "--pipeline-stage", $2 the end points; $rank is parsed.
std::string launch(const std::string& script, int stages, double grace_s = 3.0) {
  StageLaunch l;
  l.num_stages = stages;
  l.program = "/bin/sh";
  l.args = {"-c", "rank=${2%%/*}; " + script, "stage"};
  l.grace_s = grace_s;
  try {
    run_stage_processes(l);
  } catch (const Error& e) {
    return e.what();
  }
  return "ok";
}

TEST(PipelineLauncher, EndPointsRoundTripAndMalformedOnesAreErrors) {
  StageEndpoint e;
  e.rank = 1;
  e.size = 3;
  e.control_fd = 9;
  e.peer_fds = {5, -1, 7};
  EXPECT_EQ(endpoint_to_string(e), "1/3/9/5,-1,7");
  const StageEndpoint back = parse_endpoint("1/3/9/5,-1,7");
  EXPECT_EQ(back.rank, 1);
  EXPECT_EQ(back.size, 3);
  EXPECT_EQ(back.control_fd, 9);
  EXPECT_EQ(back.peer_fds, (std::vector<int>{5, -1, 7}));
  for (const char* bad : {"", "1/3/9", "3/3/9/5,-1,7", "1/3/9/5,-1", "1/3/x/5,-1,7", "1/3/9/5,,7"}) {
    EXPECT_THROW(parse_endpoint(bad), Error) << bad;
  }
}

TEST(PipelineLauncher, StagesGetTheirEndPointsAndNoNvlinkMulticast) {
  // Each stage checks its end points (rank/size/control/one fd per stage, -1 for itself) and
  // its environment.
  const std::string check =
      "[ \"$1\" = --pipeline-stage ] || exit 11; "
      "[ \"$NCCL_NVLS_ENABLE\" = 0 ] || exit 12; "
      "size=$(echo \"$2\" | cut -d/ -f2); [ \"$size\" = 3 ] || exit 13; "
      "fds=$(echo \"$2\" | cut -d/ -f4); self=$(echo \"$fds\" | cut -d, -f$((rank + 1))); [ \"$self\" = -1 ] || exit 14; "
      "exit 0";
  EXPECT_EQ(launch(check, 3), "ok");
}

TEST(PipelineLauncher, AStageThatExitsOrDiesIsTheOneLine) {
  EXPECT_EQ(launch("[ $rank = 1 ] && exit 3; exit 0", 3), "stage 1 exited with status 3 without saying why");
  EXPECT_THAT(launch("[ $rank = 2 ] && kill -9 $$; exit 0", 3), StartsWith("stage 2 died (killed by signal 9"));
}

TEST(PipelineLauncher, TheOthersAreEndedAfterTheGrace) {
  // Stage 0 would wait forever; stage 1 fails: the launcher kills stage 0 after the grace period
  // and reports stage 1, not the stage it killed.
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(launch("[ $rank = 1 ] && exit 5; exec sleep 100", 2, 0.3),
            "stage 1 exited with status 5 without saying why");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
}

TEST(PipelineLauncher, AProgramThatCannotStartIsAnError) {
  StageLaunch l;
  l.num_stages = 2;
  l.program = "/nonexistent/flexgen";
  try {
    run_stage_processes(l);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "stage 0: cannot run /nonexistent/flexgen");
  }
}

}  // namespace
}  // namespace flexgen
