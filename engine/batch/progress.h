#pragma once
// Progress of `flexgen batch` as one line for the terminal:
//   "48/200 prompts, 1234 tok/s, 0:12 left"
// tok/s counts completion tokens written by this run over the seconds since its first block
// started. Time left is estimated from the work done so far, a block's work being its positions
// (prompt_len + gen_len): seconds so far x work left / work done.
#include <cstdint>
#include <string>

namespace flexgen {

class BatchProgress {
 public:
  // `total`: prompts in the input that will be in the output (those already there included);
  // `already`: those found in the output at the start; `work`: the work of the blocks to run.
  BatchProgress(std::int64_t total, std::int64_t already, double work);

  // After a block: prompts and completion tokens it wrote, its work, and the seconds since the
  // first block started.
  void block_done(std::int64_t prompts, std::int64_t completion_tokens, double work, double elapsed_s);

  std::int64_t done() const { return done_; }
  std::int64_t tokens() const { return tokens_; }
  double tokens_per_s() const;
  double seconds_left() const;  // 0 when done; a negative value when unknown (nothing done yet)
  std::string line() const;

 private:
  std::int64_t total_, done_;
  double work_total_, work_done_ = 0;
  std::int64_t tokens_ = 0;
  double elapsed_s_ = 0;
};

// "0:07", "12:34", "1:02:03" (seconds rounded up).
std::string format_duration(double seconds);

}  // namespace flexgen
