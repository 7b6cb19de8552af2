#include "engine/batch/progress.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace flexgen {

BatchProgress::BatchProgress(std::int64_t total, std::int64_t already, double work)
    : total_(total), done_(already), work_total_(work) {}

void BatchProgress::block_done(std::int64_t prompts, std::int64_t completion_tokens, double work, double elapsed_s) {
  done_ += prompts;
  tokens_ += completion_tokens;
  work_done_ += work;
  elapsed_s_ = elapsed_s;
}

double BatchProgress::tokens_per_s() const {
  return elapsed_s_ > 0 ? static_cast<double>(tokens_) / elapsed_s_ : 0.0;
}

double BatchProgress::seconds_left() const {
  if (work_done_ >= work_total_) return 0.0;
  if (work_done_ <= 0) return -1.0;
  return elapsed_s_ * (work_total_ - work_done_) / work_done_;
}

std::string BatchProgress::line() const {
  const double left = seconds_left();
  char tps[32];
  std::snprintf(tps, sizeof tps, "%.0f", tokens_per_s());
  return std::to_string(done_) + "/" + std::to_string(total_) + " prompts, " + tps + " tok/s, " +
         (left < 0 ? std::string("?") : format_duration(left)) + " left";
}

std::string format_duration(double seconds) {
  const auto s = static_cast<std::int64_t>(std::ceil(std::max(0.0, seconds)));
  char out[48];
  if (s >= 3600) {
    std::snprintf(out, sizeof out, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(out, sizeof out, "%lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  }
  return out;
}

}  // namespace flexgen
