// The event core: order of events, events causing events, determinism.
#include "simulator/event_queue.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

namespace flexgen {
namespace {

using ::testing::HasSubstr;

Event at(Nanoseconds time, std::int32_t priority, std::int32_t type) {
  Event e;
  e.time = time;
  e.priority = priority;
  e.type = type;
  return e;
}

TEST(EventQueue, EqualTimesGoByPriorityThenByOrderOfScheduling) {
  EventQueue q;
  q.push(at(5, 1, 1));
  q.push(at(5, 0, 2));
  q.push(at(3, 2, 3));
  q.push(at(5, 0, 4));
  q.push(at(4, -1, 5));
  q.push(at(5, 1, 6));
  std::vector<std::int32_t> order;
  while (!q.empty()) order.push_back(q.pop().type);
  EXPECT_EQ(order, (std::vector<std::int32_t>{3, 5, 2, 4, 1, 6}));
}

// Against a stable sort of the pushed events by (time, priority): stability is the sequence rule.
TEST(EventQueue, ManyEventsComeOutAsAStableSort) {
  std::mt19937 gen(7);
  std::uniform_int_distribution<int> time(0, 20), prio(0, 3);
  std::vector<Event> pushed;
  EventQueue q;
  for (int i = 0; i < 2000; ++i) {
    pushed.push_back(at(time(gen), prio(gen), i));
    q.push(pushed.back());
    if (i % 3 == 0) {  // interleave pops: remove the least of what was pushed so far
      auto least = std::min_element(pushed.begin(), pushed.end(), [](const Event& a, const Event& b) {
        return a.time != b.time           ? a.time < b.time
               : a.priority != b.priority ? a.priority < b.priority
                                          : a.type < b.type;
      });
      EXPECT_EQ(q.pop().type, least->type);
      pushed.erase(least);
    }
  }
  std::stable_sort(pushed.begin(), pushed.end(), [](const Event& a, const Event& b) {
    return a.time != b.time ? a.time < b.time : a.priority < b.priority;
  });
  for (const Event& e : pushed) EXPECT_EQ(q.pop().type, e.type);
  EXPECT_TRUE(q.empty());
}

TEST(RunEvents, CausedEventsAtTheSameTimeAreOrderedByPriorityThenSequence) {
  std::vector<std::string> seen;
  const std::vector<Event> initial = {at(0, 5, 'A'), at(0, 3, 'E'), at(2, 0, 'F')};
  const std::int64_t handled = run_events(initial, [&](const Event& e, std::vector<Event>& caused) {
    seen.push_back(std::string(1, static_cast<char>(e.type)) + "@" + std::to_string(e.time));
    if (e.type == 'A') {
      caused.push_back(at(0, 1, 'B'));
      caused.push_back(at(0, 9, 'C'));
      caused.push_back(at(0, 1, 'D'));
      caused.push_back(at(2, 0, 'G'));  // after F: same time and priority, scheduled later
    }
  });
  EXPECT_EQ(handled, 7);
  EXPECT_EQ(seen, (std::vector<std::string>{"E@0", "A@0", "B@0", "D@0", "C@0", "F@2", "G@2"}));
}

TEST(RunEvents, AnEventCausingOneInThePastIsAnError) {
  try {
    run_events({at(10, 0, 1)}, [](const Event&, std::vector<Event>& caused) { caused.push_back(at(9, 0, 2)); });
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("caused an event in the past (9 ns)"));
  }
}

}  // namespace
}  // namespace flexgen
