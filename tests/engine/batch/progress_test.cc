// The progress line of `flexgen batch`: rates and time left worked out by hand.
#include "engine/batch/progress.h"

#include <gtest/gtest.h>

namespace flexgen {
namespace {

TEST(BatchProgress, RateAndTimeLeftFromTheWorkDone) {
  BatchProgress p(100, 20, 40.0);  // 20 already done; blocks of work 40 in all to run
  EXPECT_LT(p.seconds_left(), 0.0);
  EXPECT_EQ(p.line(), "20/100 prompts, 0 tok/s, ? left");
  p.block_done(30, 300, 10.0, 2.0);  // a quarter of the work in 2 s: 6 s left
  EXPECT_EQ(p.done(), 50);
  EXPECT_DOUBLE_EQ(p.tokens_per_s(), 150.0);
  EXPECT_DOUBLE_EQ(p.seconds_left(), 6.0);
  EXPECT_EQ(p.line(), "50/100 prompts, 150 tok/s, 0:06 left");
  p.block_done(50, 500, 30.0, 10.0);
  EXPECT_DOUBLE_EQ(p.seconds_left(), 0.0);
  EXPECT_EQ(p.line(), "100/100 prompts, 80 tok/s, 0:00 left");
}

TEST(BatchProgress, DurationsAreMinutesAndSecondsOrHours) {
  EXPECT_EQ(format_duration(0), "0:00");
  EXPECT_EQ(format_duration(0.2), "0:01");  // rounded up
  EXPECT_EQ(format_duration(59), "0:59");
  EXPECT_EQ(format_duration(754), "12:34");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(-5), "0:00");
}

}  // namespace
}  // namespace flexgen
