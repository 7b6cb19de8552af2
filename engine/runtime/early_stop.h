#pragma once
// Early finish of a block: once every sequence of a gpu batch has produced the stop token, the
// rest of that batch's tasks are skipped, and once every batch has, the per-layer weight tasks
// too. Both backends consult it from their task functions (any executor worker). A skipped task
// does no work and touches no buffer, so nothing that still runs depends on it: later tasks of a
// finished batch are skipped with it, and other batches never read a finished batch's data.
// Tasks of the finished batch that already ran (prefetches of the next step) are harmless.
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <vector>

#include "engine/runtime/schedule.h"

namespace flexgen {

class EarlyStop {
 public:
  EarlyStop(std::int64_t num_batches, std::optional<std::int32_t> stop_token);

  // Called after the output layer of `batch` sampled step `token`: `generated` holds the batch's
  // sequences so far.
  void observe(std::int64_t batch, std::int64_t token, const std::vector<std::vector<std::int32_t>>& generated);

  // Whether the task can be skipped.
  bool skip(const Task& task) const;

  // Steps batch `batch` ran: gen_len, or one past the step at which it finished.
  std::int64_t steps_run(std::int64_t batch, std::int64_t gen_len) const;

 private:
  static constexpr std::int64_t kRunning = std::numeric_limits<std::int64_t>::max();
  std::optional<std::int32_t> stop_;
  std::unique_ptr<std::atomic<std::int64_t>[]> done_after_;  // per batch: the last step it needed
  std::int64_t batches_ = 0;
};

}  // namespace flexgen
