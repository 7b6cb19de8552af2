#include "engine/core/parallel.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "engine/core/error.h"

namespace flexgen {
namespace {

using ::testing::HasSubstr;

TEST(ParallelFor, CoversEveryIndexOnceInContiguousChunks) {
  for (int threads : {1, 2, 5}) {
    ScopedParallelThreads scope(threads);
    EXPECT_EQ(parallel_threads(), threads);
    for (std::int64_t n : {1, 7, 100, 1001}) {
      std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
      std::mutex mutex;
      std::vector<std::pair<std::int64_t, std::int64_t>> chunks;
      parallel_for(n, 1, [&](std::int64_t begin, std::int64_t end) {
        {
          std::lock_guard<std::mutex> lock(mutex);
          chunks.emplace_back(begin, end);
        }
        for (std::int64_t i = begin; i < end; ++i) hits[static_cast<std::size_t>(i)]++;
      });
      for (std::int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(hits[static_cast<std::size_t>(i)].load(), 1) << "n " << n << " index " << i;
      }
      // min(threads, n) chunks, none empty.
      EXPECT_EQ(static_cast<std::int64_t>(chunks.size()), std::min<std::int64_t>(threads, n));
      for (const auto& [begin, end] : chunks) EXPECT_LT(begin, end);
    }
  }
}

TEST(ParallelFor, GrainLimitsTheNumberOfChunks) {
  ScopedParallelThreads scope(4);
  std::atomic<int> calls{0};
  parallel_for(10, 6, [&](std::int64_t, std::int64_t) { calls++; });  // ceil(10 / 6) = 2
  EXPECT_EQ(calls.load(), 2);
  calls = 0;
  parallel_for(10, 100, [&](std::int64_t begin, std::int64_t end) {
    EXPECT_EQ(begin, 0);
    EXPECT_EQ(end, 10);
    calls++;
  });
  EXPECT_EQ(calls.load(), 1);
  parallel_for(0, 1, [&](std::int64_t, std::int64_t) { calls++; });
  EXPECT_EQ(calls.load(), 1);
}

TEST(ParallelFor, UsesSeveralThreadsWhenAllowed) {
  ScopedParallelThreads scope(3);
  std::mutex mutex;
  std::vector<std::thread::id> ids;
  // Each chunk waits until every chunk has started, which needs three threads at once.
  std::atomic<int> started{0};
  parallel_for(3, 1, [&](std::int64_t, std::int64_t) {
    started++;
    while (started.load() < 3) std::this_thread::yield();
    std::lock_guard<std::mutex> lock(mutex);
    ids.push_back(std::this_thread::get_id());
  });
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_NE(ids[0], ids[1]);
  EXPECT_NE(ids[1], ids[2]);
  EXPECT_NE(ids[0], ids[2]);
}

TEST(ParallelFor, NestedCallsRunInline) {
  ScopedParallelThreads scope(2);
  std::atomic<int> inner{0};
  parallel_for(4, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) {
      parallel_for(5, 1, [&](std::int64_t b, std::int64_t e) { inner += static_cast<int>(e - b); });
    }
  });
  EXPECT_EQ(inner.load(), 20);
}

TEST(ParallelFor, RethrowsAnExceptionFromABody) {
  ScopedParallelThreads scope(2);
  EXPECT_THROW(parallel_for(8, 1,
                            [](std::int64_t begin, std::int64_t) {
                              if (begin > 0) throw std::runtime_error("chunk failed");
                            }),
               std::runtime_error);
  // The pool still works afterwards.
  std::atomic<int> count{0};
  parallel_for(8, 1, [&](std::int64_t b, std::int64_t e) { count += static_cast<int>(e - b); });
  EXPECT_EQ(count.load(), 8);
}

TEST(ParallelFor, RejectsANegativeThreadCount) {
  try {
    set_parallel_threads(-2);
    FAIL() << "expected flexgen::Error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("thread count"));
    EXPECT_THAT(e.what(), HasSubstr("-2"));
  }
}

TEST(ParallelFor, ZeroRestoresTheHardwareDefault) {
  ScopedParallelThreads scope(3);
  set_parallel_threads(0);
  const unsigned hw = std::thread::hardware_concurrency();
  EXPECT_EQ(parallel_threads(), hw == 0 ? 1 : static_cast<int>(hw));
}

}  // namespace
}  // namespace flexgen
