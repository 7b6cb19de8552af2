#include "engine/runtime/io_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <set>
#include <thread>

namespace flexgen {
namespace {

TEST(IoPool, RunsEveryQueuedTaskOnItsWorkersBeforeShutdownReturns) {
  constexpr std::int64_t kTasks = 1000;
  std::atomic<std::int64_t> sum{0};
  std::atomic<bool> bad_worker{false};
  std::mutex mutex;
  std::set<std::thread::id> thread_ids;
  IoPool pool(3);
  EXPECT_EQ(pool.size(), 3u);
  for (std::int64_t i = 0; i < kTasks; ++i) {
    pool.submit([&, i](std::size_t worker) {
      if (worker >= 3) bad_worker = true;
      sum += i;
      std::lock_guard lock(mutex);
      thread_ids.insert(std::this_thread::get_id());
    });
  }
  pool.shutdown();
  EXPECT_EQ(sum.load(), kTasks * (kTasks - 1) / 2);  // 0 + 1 + ... + 999
  EXPECT_FALSE(bad_worker.load());
  EXPECT_LE(thread_ids.size(), 3u);
  EXPECT_EQ(thread_ids.count(std::this_thread::get_id()), 0u);
  pool.shutdown();  // idempotent
}

TEST(IoPool, BatchSubmitAndDestructorDrain) {
  std::atomic<int> count{0};
  {
    IoPool pool(2);
    std::vector<IoPool::Task> tasks;
    for (int i = 0; i < 50; ++i) tasks.emplace_back([&](std::size_t) { ++count; });
    pool.submit(std::move(tasks));
  }
  EXPECT_EQ(count.load(), 50);
}

}  // namespace
}  // namespace flexgen
