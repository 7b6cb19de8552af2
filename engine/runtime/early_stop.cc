#include "engine/runtime/early_stop.h"

#include <algorithm>

namespace flexgen {

EarlyStop::EarlyStop(std::int64_t num_batches, std::optional<std::int32_t> stop_token)
    : stop_(stop_token), done_after_(new std::atomic<std::int64_t>[static_cast<std::size_t>(num_batches)]),
      batches_(num_batches) {
  for (std::int64_t k = 0; k < num_batches; ++k) done_after_[static_cast<std::size_t>(k)] = kRunning;
}

void EarlyStop::observe(std::int64_t batch, std::int64_t token, const std::vector<std::vector<std::int32_t>>& generated) {
  if (!stop_) return;
  for (const auto& seq : generated) {
    if (std::find(seq.begin(), seq.end(), *stop_) == seq.end()) return;
  }
  std::int64_t expected = kRunning;
  done_after_[static_cast<std::size_t>(batch)].compare_exchange_strong(expected, token);
}

bool EarlyStop::skip(const Task& task) const {
  if (!stop_) return false;
  if (task.batch >= 0) return task.token > done_after_[static_cast<std::size_t>(task.batch)].load();
  std::int64_t last = 0;
  for (std::int64_t k = 0; k < batches_; ++k) last = std::max(last, done_after_[static_cast<std::size_t>(k)].load());
  return task.token > last;
}

std::int64_t EarlyStop::steps_run(std::int64_t batch, std::int64_t gen_len) const {
  const std::int64_t d = done_after_[static_cast<std::size_t>(batch)].load();
  return d == kRunning ? gen_len : std::min(gen_len, d + 1);
}

}  // namespace flexgen
