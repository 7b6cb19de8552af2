#include "simulator/task_span.h"

#include <string>

#include "engine/core/error.h"
#include "simulator/duration_model.h"

namespace flexgen {

std::vector<TaskSpan> measured_spans(const std::vector<TaskTiming>& timings) {
  std::vector<TaskSpan> out(timings.size());
  for (std::size_t i = 0; i < timings.size(); ++i) {
    const std::string what = str_cat("timing of task ", i);
    out[i].start = to_nanoseconds(timings[i].start_s, what.c_str());
    out[i].end = to_nanoseconds(timings[i].end_s, what.c_str());
    FLEXGEN_REQUIRE(out[i].end >= out[i].start, "invalid timing of task ", i, ": it ends (", timings[i].end_s,
                    " s) before it starts (", timings[i].start_s, " s)");
  }
  return out;
}

}  // namespace flexgen
