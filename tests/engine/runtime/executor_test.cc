// The executor: dependencies honoured under overlap, list order without it, errors stop the run.
#include "engine/runtime/executor.h"

#include <atomic>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace flexgen {
namespace {

// A random DAG: each task on a random resource, depending on up to three earlier tasks.
Schedule random_schedule(std::uint64_t seed, int n) {
  std::mt19937_64 rng(seed);
  const TaskKind kinds[] = {TaskKind::kWeightLoad, TaskKind::kCompute, TaskKind::kCacheStore,
                            TaskKind::kCacheRead, TaskKind::kCacheWrite, TaskKind::kCpuAttention};
  Schedule s;
  for (int i = 0; i < n; ++i) {
    Task t;
    t.kind = kinds[rng() % 6];
    t.token = i;
    for (int d = 0; d < 3 && i > 0; ++d) {
      if (rng() % 2) t.deps.push_back(static_cast<TaskId>(rng() % static_cast<std::uint64_t>(i)));
    }
    s.tasks.push_back(t);
  }
  return s;
}

TEST(Executor, OverlapHonoursEveryDependencyAndRunsEachTaskOnce) {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    const Schedule s = random_schedule(seed, 300);
    std::vector<std::atomic<int>> runs(s.tasks.size());
    std::vector<std::atomic<int>> finished(s.tasks.size());
    std::atomic<int> violations{0};
    Executor::execute(s, /*overlap=*/true, [&](const Task& t, TaskId id) {
      for (TaskId d : t.deps) {
        if (!finished[static_cast<std::size_t>(d)]) ++violations;
      }
      ++runs[static_cast<std::size_t>(id)];
      if (id % 7 == 0) std::this_thread::yield();
      finished[static_cast<std::size_t>(id)] = 1;
    });
    EXPECT_EQ(violations, 0);
    for (auto& r : runs) EXPECT_EQ(r, 1);
  }
}

TEST(Executor, ResourcesRunTheirTasksInListOrder) {
  const Schedule s = random_schedule(5, 400);
  std::mutex m;
  std::vector<std::vector<TaskId>> order(kNumResources);
  Executor::execute(s, true, [&](const Task& t, TaskId id) {
    std::lock_guard lock(m);
    order[static_cast<std::size_t>(t.resource())].push_back(id);
  });
  for (const auto& o : order) EXPECT_TRUE(std::is_sorted(o.begin(), o.end()));
}

TEST(Executor, WithoutOverlapTasksRunInListOrderOnTheCallingThread) {
  const Schedule s = random_schedule(9, 100);
  std::vector<TaskId> order;
  const auto caller = std::this_thread::get_id();
  Executor::execute(s, false, [&](const Task&, TaskId id) {
    EXPECT_EQ(std::this_thread::get_id(), caller);
    order.push_back(id);
  });
  ASSERT_EQ(order.size(), 100u);
  for (std::size_t i = 0; i < order.size(); ++i) EXPECT_EQ(order[i], static_cast<TaskId>(i));
}

TEST(Executor, TheFirstErrorStopsTheRunAndIsRethrown) {
  for (bool overlap : {true, false}) {
    const Schedule s = random_schedule(11, 500);
    std::atomic<int> after{0};
    try {
      Executor::execute(s, overlap, [&](const Task&, TaskId id) {
        if (id == 50) throw std::runtime_error("disk on fire");
        if (id > 50) ++after;
      });
      ADD_FAILURE() << "expected the error";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "disk on fire");
    }
    // Tasks that depend (directly or not) on the failed one never run; with overlap a few
    // independent ones already in hand may finish.
    EXPECT_LT(after.load(), 450);
  }
}

}  // namespace
}  // namespace flexgen
