// The sweep-file reader (experiments/sweeps/*.json): parsing and grid expansion, pure (no file is
// opened). Property: the resolved points are a fixed point of the reader — a sweep listing them
// as one axis of variants gives the same points with the same ids.
#include <nlohmann/json.hpp>

#include "engine/core/json_fields.h"
#include "engine/sweep/sweep_file.h"
#include "fuzz/fuzz_target.h"

FLEXGEN_FUZZ_TARGET(sweep_file) {
  using namespace flexgen;
  const Sweep sweep = parse_sweep(parse_ordered_json_text(input, "sweep"), "sweep");
  FLEXGEN_FUZZ_CHECK(!sweep.points.empty(), "a parsed sweep has points");
  nlohmann::ordered_json again = {{"name", sweep.name},
                                  {"target", sweep_target_name(sweep.target)},
                                  {"hardware", sweep.hardware},
                                  {"grid", nlohmann::ordered_json::array()}};
  nlohmann::ordered_json variants = nlohmann::ordered_json::array();
  for (const SweepPoint& p : sweep.points) {
    FLEXGEN_FUZZ_CHECK(p.id == sweep_point_id(sweep.target, p.params), "id is the hash of the parameters");
    nlohmann::ordered_json params = nlohmann::ordered_json::parse(p.params.dump());
    if (sweep.target == SweepTarget::kSimulator) {
      params.erase("backend");
      params.erase("seed");
    }
    variants.push_back(params);
  }
  again["grid"].push_back({{"v", variants}});
  const Sweep second = parse_sweep(again, "round trip");
  FLEXGEN_FUZZ_CHECK(second.points.size() == sweep.points.size(), "same number of points");
  for (std::size_t i = 0; i < second.points.size(); ++i) {
    FLEXGEN_FUZZ_CHECK(second.points[i].id == sweep.points[i].id, "same point ids");
    FLEXGEN_FUZZ_CHECK(second.points[i].params == sweep.points[i].params, "same parameters");
  }
}
