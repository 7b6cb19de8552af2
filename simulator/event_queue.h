#pragma once
// The discrete-event core. An Event happens at an integer nanosecond; events at the same time are
// taken by priority (lower first), then by the order in which they were scheduled (sequence), so
// a run is deterministic. Handling an event returns the events it causes (appended to a vector
// the loop owns and reuses, so no event allocates); the loop alone pushes to and pops from the
// queue.
#include <cstdint>
#include <utility>
#include <vector>

#include "engine/core/error.h"
#include "engine/core/units.h"

namespace flexgen {

struct Event {
  Nanoseconds time = 0;
  std::int32_t priority = 0;   // at equal times, lower first
  std::int32_t type = 0;       // what happens; meaning defined by the handler
  std::int64_t subject = 0;    // what it happens to (a task id, a resource ...)
  std::int64_t data = 0;       // anything else the handler needs (e.g. a version number)
  std::uint64_t sequence = 0;  // set by the queue when pushed: the last tie-breaker
};

// Strict order of events: (time, priority, sequence).
inline bool event_before(const Event& a, const Event& b) {
  if (a.time != b.time) return a.time < b.time;
  if (a.priority != b.priority) return a.priority < b.priority;
  return a.sequence < b.sequence;
}

// A binary min-heap of events on (time, priority, sequence).
class EventQueue {
 public:
  void reserve(std::size_t n) { heap_.reserve(n); }
  bool empty() const { return heap_.empty(); }
  std::size_t size() const { return heap_.size(); }
  // Stamps the event with the next sequence number and inserts it.
  void push(Event event);
  // Removes and returns the first event. The queue must not be empty.
  Event pop();

 private:
  std::vector<Event> heap_;
  std::uint64_t next_sequence_ = 0;
};

// Runs events in order until none is left. `handle(const Event& event, std::vector<Event>& caused)`
// appends the events `event` causes; they may not happen before it (a handler that schedules into
// the past is a bug: flexgen::Error). The initial events are scheduled in the order given.
// Returns the number of events handled.
template <typename Handler>
std::int64_t run_events(const std::vector<Event>& initial, Handler&& handle, std::size_t reserve = 0) {
  EventQueue queue;
  queue.reserve(reserve);
  for (const Event& e : initial) queue.push(e);
  std::vector<Event> caused;
  std::int64_t handled = 0;
  while (!queue.empty()) {
    const Event event = queue.pop();
    ++handled;
    caused.clear();
    handle(event, caused);
    for (const Event& c : caused) {
      FLEXGEN_REQUIRE(c.time >= event.time, "simulator: an event at ", event.time, " ns caused an event in the past (",
                      c.time, " ns)");
      queue.push(c);
    }
  }
  return handled;
}

}  // namespace flexgen
