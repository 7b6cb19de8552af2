// The lane executor against an independent list-scheduling computation and hand-worked shared
// link timings.
#include "simulator/task_graph.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "engine/core/error.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;

// Tasks on lanes in list order; each starts when its lane's previous task and all its
// dependencies have ended.
std::vector<TaskSpan> list_schedule(const TaskGraph& g) {
  std::vector<TaskSpan> s(g.lane.size());
  std::vector<Nanoseconds> lane_free(static_cast<std::size_t>(g.num_lanes), 0);
  for (std::size_t i = 0; i < g.lane.size(); ++i) {
    Nanoseconds start = lane_free[static_cast<std::size_t>(g.lane[i])];
    for (std::int64_t e = g.dep_begin[i]; e < g.dep_begin[i + 1]; ++e) {
      start = std::max(start, s[static_cast<std::size_t>(g.dep_ids[static_cast<std::size_t>(e)])].end);
    }
    s[i] = {start, start + g.duration[i]};
    lane_free[static_cast<std::size_t>(g.lane[i])] = s[i].end;
  }
  return s;
}

TaskGraph random_graph(unsigned seed, std::int32_t n, std::int32_t lanes) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<std::int32_t> lane(0, lanes - 1), ndeps(0, 3);
  std::uniform_int_distribution<Nanoseconds> dur(0, 40);
  TaskGraph g;
  g.num_lanes = lanes;
  for (std::int32_t i = 0; i < n; ++i) {
    const std::int32_t l = lane(gen);
    const Nanoseconds d = dur(gen);
    g.add_task(l, d < 5 ? 0 : d);  // some zero-length tasks
    if (i == 0) continue;
    std::uniform_int_distribution<std::int32_t> pick(std::max(0, i - 12), i - 1);
    std::vector<std::int32_t> deps;
    for (std::int32_t k = ndeps(gen); k > 0; --k) deps.push_back(pick(gen));
    std::sort(deps.begin(), deps.end());
    deps.erase(std::unique(deps.begin(), deps.end()), deps.end());
    for (std::int32_t dep : deps) g.add_dep(dep);
  }
  return g;
}

TEST(TaskGraph, RandomGraphsMatchListScheduling) {
  for (unsigned seed = 1; seed <= 20; ++seed) {
    const TaskGraph g = random_graph(seed, 400, 1 + static_cast<std::int32_t>(seed % 6));
    const GraphRun run = run_task_graph(g);
    const std::vector<TaskSpan> want = list_schedule(g);
    ASSERT_EQ(run.spans.size(), want.size());
    for (std::size_t i = 0; i < want.size(); ++i) {
      ASSERT_EQ(run.spans[i], want[i]) << "seed " << seed << " task " << i;
    }
    EXPECT_EQ(run.events, 2 * 400);  // a start and an end per task
  }
}

TaskGraph two_links(Nanoseconds a, Nanoseconds b, double rate) {
  TaskGraph g;
  g.num_lanes = 2;
  g.add_task(0, a);
  g.add_task(1, b);
  g.shared_pairs = {{0, 1}};
  g.shared_rate = rate;
  return g;
}

TEST(TaskGraph, SharedLinkHalvesBothWhileTheyOverlap) {
  // Both at half speed: 100 ns of work each takes 200 ns.
  GraphRun r = run_task_graph(two_links(100, 100, 0.5));
  EXPECT_EQ(r.spans[0], (TaskSpan{0, 200}));
  EXPECT_EQ(r.spans[1], (TaskSpan{0, 200}));
  // 100 and 300: the first ends at 200; the second has done 100, its last 200 at full speed.
  r = run_task_graph(two_links(100, 300, 0.5));
  EXPECT_EQ(r.spans[0], (TaskSpan{0, 200}));
  EXPECT_EQ(r.spans[1], (TaskSpan{0, 400}));
  // At 0.75: 100 / 0.75 = 133.3, rounded up to 134; the second has done 100.5 of 300 by then and
  // ends 199.5 -> 200 ns later.
  r = run_task_graph(two_links(100, 300, 0.75));
  EXPECT_EQ(r.spans[0], (TaskSpan{0, 134}));
  EXPECT_EQ(r.spans[1], (TaskSpan{0, 334}));
  // Rate 1: independent.
  r = run_task_graph(two_links(100, 300, 1.0));
  EXPECT_EQ(r.spans[1], (TaskSpan{0, 300}));
}

TEST(TaskGraph, SharedLinkSlowsATaskAlreadyRunningWhenTheOtherStarts) {
  // Lane 2 (compute) runs 50 ns; the d2h task (lane 1) waits for it. The h2d task (lane 0) runs
  // alone for 50 ns (50 done), then both at half speed: h2d's last 50 take 100 ns (ends 150);
  // d2h does 50 by 150, then its last 50 at full speed (ends 200).
  TaskGraph g;
  g.num_lanes = 3;
  g.add_task(2, 50);
  g.add_task(0, 100);
  g.add_task(1, 100);
  g.add_dep(0);
  g.shared_pairs = {{0, 1}};
  g.shared_rate = 0.5;
  const GraphRun r = run_task_graph(g);
  EXPECT_EQ(r.spans[1], (TaskSpan{0, 150}));
  EXPECT_EQ(r.spans[2], (TaskSpan{50, 200}));
}

TEST(TaskGraph, BadGraphsAreRefused) {
  auto message = [](const TaskGraph& g) {
    try {
      run_task_graph(g);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  TaskGraph g;
  g.num_lanes = 1;
  g.add_task(0, 1);
  g.add_task(0, 1);
  g.add_dep(1);
  EXPECT_THAT(message(g), HasSubstr("task 1 depends on task 1, which does not come before it"));
  TaskGraph lane;
  lane.num_lanes = 2;
  lane.add_task(2, 1);
  EXPECT_THAT(message(lane), HasSubstr("task 0 is on lane 2 but there are 2 lanes"));
  TaskGraph neg;
  neg.num_lanes = 1;
  neg.add_task(0, -3);
  EXPECT_THAT(message(neg), HasSubstr("task 0 has a negative duration (-3 ns)"));
  TaskGraph pair = two_links(1, 1, 0.5);
  pair.shared_pairs = {{0, 0}};
  EXPECT_THAT(message(pair), HasSubstr("must name two different lanes"));
  TaskGraph rate = two_links(1, 1, 0.0);
  EXPECT_THAT(message(rate), HasSubstr("shared rate 0 must be in (0, 1]"));
}

}  // namespace
}  // namespace flexgen
