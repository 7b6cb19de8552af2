// The HardwareSpec reader (experiments/hardware/*.json), and its JSON round trip.
#include <nlohmann/json.hpp>

#include "engine/core/hardware_spec.h"
#include "fuzz/fuzz_target.h"

FLEXGEN_FUZZ_TARGET(hardware_spec) {
  using namespace flexgen;
  const fuzz::MemFile file(input);
  const HardwareSpec spec = HardwareSpec::from_file(file.path());
  spec.validate();
  FLEXGEN_FUZZ_CHECK(HardwareSpec::from_json(spec.to_json(), "round trip") == spec,
                     "from_json(to_json(spec)) == spec");
}
