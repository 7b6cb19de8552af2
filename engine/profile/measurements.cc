#include "engine/profile/measurements.h"

#include <algorithm>
#include <cmath>

#include "engine/core/error.h"

namespace flexgen {

double median_of(const std::vector<double>& samples, const std::string& what) {
  FLEXGEN_REQUIRE(!samples.empty(), "profile: no samples for ", what);
  for (double s : samples) {
    FLEXGEN_REQUIRE(std::isfinite(s), "profile: a sample of ", what, " is not a finite number (", s,
                    ")");
  }
  std::vector<double> sorted = samples;
  std::sort(sorted.begin(), sorted.end());
  const std::size_t n = sorted.size();
  return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0;
}

const char* phase_name(Phase phase) { return phase == Phase::kPrefill ? "prefill" : "decode"; }

}  // namespace flexgen
